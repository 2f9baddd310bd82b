"""Per-module ΔW comparison of two LoRAs in any formats (`python -m convert --verify A B`)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ModuleDiff:
    name: str
    max_abs: float  # max |ΔW_a - ΔW_b|
    max_rel: float  # max_abs / max |ΔW_a|
    ok: bool


@dataclass
class VerifyReport:
    diffs: list[ModuleDiff] = field(default_factory=list)
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)
    rtol: float = 0.0
    atol: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.only_in_a and not self.only_in_b and all(d.ok for d in self.diffs)

    @property
    def max_abs(self) -> float:
        return max((d.max_abs for d in self.diffs), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((d.max_rel for d in self.diffs), default=0.0)

    def summary(self) -> str:
        bad = [d for d in self.diffs if not d.ok]
        lines = [f"{'OK' if self.ok else 'DIFFERENT'}: {len(self.diffs)} common modules, max abs error {self.max_abs:.3g}, "
                 f"max rel error {self.max_rel:.3g} (rtol {self.rtol:g}, atol {self.atol:g})"]
        lines += [f"  differs: {d.name} (abs {d.max_abs:.3g}, rel {d.max_rel:.3g})" for d in bad[:20]]
        lines += [f"  only in A: {n}" for n in self.only_in_a[:20]]
        lines += [f"  only in B: {n}" for n in self.only_in_b[:20]]
        return "\n".join(lines)


def verify(a, b, rtol: float = 1e-5, atol: float = 1e-8) -> VerifyReport:
    """Compare ΔW module by module (LoraFile or path each). A module passes when
    max|ΔW_a − ΔW_b| ≤ atol + rtol · max|ΔW_a| (a norm-wise test: tiny entries do not dominate)."""
    from .formats import load_any

    a = load_any(a) if not hasattr(a, "modules") else a
    b = load_any(b) if not hasattr(b, "modules") else b
    report = VerifyReport(rtol=rtol, atol=atol)
    report.only_in_a = sorted(set(a.modules) - set(b.modules))
    report.only_in_b = sorted(set(b.modules) - set(a.modules))
    for name in sorted(set(a.modules) & set(b.modules)):
        da, db = a.modules[name].delta(), b.modules[name].delta()
        if da.numel() != db.numel():
            report.diffs.append(ModuleDiff(name, float("inf"), float("inf"), False))
            continue
        err = (da.flatten() - db.flatten()).abs().max().item()
        ref = da.abs().max().item()
        rel = err / ref if ref > 0 else (0.0 if err == 0 else float("inf"))
        report.diffs.append(ModuleDiff(name, err, rel, err <= atol + rtol * ref))
    return report
