"""Screenshot of sd-webui's Adverb LoRA tab with a caption preview, through headless Chromium's DevTools protocol.

Usage (with sd-webui running with the pack in extensions/, at URL; `websockets` comes with sd-webui's gradio):

    $SDWEBUI_PATH/venv/bin/python tools/sdwebui_screenshot.py http://127.0.0.1:7860 <coco root> <split> docs/sdwebui-tab.png

Chromium from the system package manager (`apt-get install chromium fonts-noto-color-emoji`), headless; the
page is opened in the light theme, the Adverb LoRA tab clicked, the COCO root and split filled in and Preview
pressed; the shot is taken once the before/after table has rows. (What made docs/sdwebui-tab.png: the
project's real COCO val2017 captions, images not needed for Preview.)
"""
import asyncio
import base64
import itertools
import json
import subprocess
import sys
import time
import urllib.request

URL, COCO, SPLIT, OUT = sys.argv[1:5]
PORT = 9233

JS_CLICK_TAB = """(() => {
  const b = [...document.querySelectorAll('button')].find(b => b.textContent.trim() === %s && b.offsetParent !== null);
  if (!b) return false; b.click(); return true; })()"""
JS_FILL = """(() => {
  const root = document.querySelector('#tab_adverb_lora');
  const spans = [...root.querySelectorAll('label span')];
  const set = (label, value) => {
    const s = spans.find(s => s.textContent.trim().startsWith(label));
    const el = s.closest('label').querySelector('textarea, input');
    el.value = value; el.dispatchEvent(new Event('input', {bubbles: true}));
  };
  set('COCO root', %s); set('Split (COCO)', %s);
  return true; })()"""
JS_PREVIEW = """(() => {
  const b = [...document.querySelectorAll('#tab_adverb_lora button')].find(b => b.textContent.trim() === 'Preview');
  b.click(); return true; })()"""
JS_ROWS = "document.querySelectorAll('#tab_adverb_lora table tbody tr').length"


async def main():
    import websockets

    chrome = subprocess.Popen(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                               f"--remote-debugging-port={PORT}", "--remote-allow-origins=*",
                               "--window-size=1400,1000", "about:blank"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(60):
            try:
                pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{PORT}/json"))
                page = next(p for p in pages if p["type"] == "page")
                break
            except Exception:
                time.sleep(0.5)
        async with websockets.connect(page["webSocketDebuggerUrl"], max_size=2**26) as ws:
            ids = itertools.count(1)

            async def cdp(method, **params):
                i = next(ids)
                await ws.send(json.dumps({"id": i, "method": method, "params": params}))
                while True:
                    msg = json.loads(await ws.recv())
                    if msg.get("id") == i:
                        if "error" in msg:
                            raise RuntimeError(f"{method}: {msg['error']}")
                        return msg["result"]

            async def js(expr):
                r = await cdp("Runtime.evaluate", expression=expr, returnByValue=True)
                return r["result"].get("value")

            async def until(expr, timeout=300):
                end = time.monotonic() + timeout
                while time.monotonic() < end:
                    v = await js(expr)
                    if v:
                        return v
                    await asyncio.sleep(0.5)
                raise TimeoutError(expr)

            await cdp("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False)
            await cdp("Page.navigate", url=URL + "/?__theme=light")
            await until("!!document.querySelector('#tab_adverb_lora')", 180)
            await until(JS_CLICK_TAB % json.dumps("Adverb LoRA"))
            await asyncio.sleep(1)
            await js(JS_FILL % (json.dumps(COCO), json.dumps(SPLIT)))
            await asyncio.sleep(0.5)
            await js(JS_PREVIEW)
            print("rows:", await until(JS_ROWS + " > 1 && " + JS_ROWS, 600))
            await asyncio.sleep(2)
            shot = await cdp("Page.captureScreenshot", format="png")
            with open(OUT, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
    finally:
        chrome.terminate()
        chrome.wait(10)


asyncio.run(main())
