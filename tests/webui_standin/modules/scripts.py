"""sd-webui's modules/scripts.py: `basedir()`, the folder of the extension whose script is being loaded."""
import os


def basedir():
    return os.getcwd()
