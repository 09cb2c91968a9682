"""How a training step runs on this machine: bf16 autocast where the CPU has native bf16, torch.compile where it
pays for itself.

- Precision: `train.autocast_bf16` unset (the recipes' default) means bf16 autocast exactly when the CPU computes
  bf16 natively (AVX512-BF16 or AMX, oneDNN's check); elsewhere bf16 is emulated and several times slower than
  fp32 (measured ~9x on an AVX2-only EPYC), so training stays fp32. An explicit `true` on such a CPU falls back to
  fp32 with a warning; an explicit `false` is kept.
- Compile: `train.compile` unset means "when it wins": the run starts eager; after a few timed steps, a run whose
  remaining eager time is estimated above `COMPILE_WORTH_SECONDS` (long enough to repay a cold compile, measured
  2-20 s for the dense part of the adult recipe) compiles its dense part, times a few compiled steps and keeps
  whichever is faster. A compile that fails falls back to eager with a warning. `true` compiles from the first
  step (still falling back on failure), `false` never compiles.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

WARM_STEPS = 3  # steps not timed (allocator and kernel warm-up)
TIMED_STEPS = 8  # steps timed on each side before a decision
COMPILE_WORTH_SECONDS = 60.0  # remaining eager time above which a compile is tried
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 natively (oneDNN's check); without it bf16 autocast only costs time."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty when unreadable)."""
    try:
        return frozenset(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return frozenset()


def cpu_bf16_flags() -> tuple[str, ...]:
    """The CPU flags that give native bf16 (empty when unreadable or absent)."""
    return tuple(f for f in BF16_FLAGS if f in cpu_flags())


def resolve_bf16(requested: bool | None) -> bool:
    """The bf16 setting a run uses: the CPU's choice when unset, an explicit request kept unless the CPU lacks it."""
    if requested is None:
        return cpu_has_bf16()
    if requested and not cpu_has_bf16():
        warnings.warn("train.autocast_bf16: this CPU has no native bf16 (no AVX512-BF16/AMX), where emulated bf16 "
                      "is several times slower than fp32; training in fp32", stacklevel=3)
        return False
    return bool(requested)


def describe(bf16: bool, requested_bf16: bool | None, compile: bool | None) -> str:
    """One line naming the precision and compile choice and why (printed at the start of training)."""
    flags = ", ".join(cpu_bf16_flags()) or ("native bf16" if cpu_has_bf16() else "")
    if bf16:
        why = "as configured" if requested_bf16 else f"the CPU has native bf16: {flags}"
        precision = f"bf16 autocast ({why})"
    elif requested_bf16 is False:
        precision = "fp32 (as configured)"
    else:
        precision = "fp32 (no native bf16 on this CPU)"
    how = {True: "on", False: "off"}.get(compile, f"auto (compiled if the run is estimated above "
                                                   f"{COMPILE_WORTH_SECONDS:.0f} s eager and compiled steps are faster)")
    return f"precision: {precision}; compile: {how}"


Step = Callable[[Any], torch.Tensor]


class AdaptiveStep:
    """A training step that runs eager, or compiled when that is asked for or measured to win (see module doc).

    `eager` and `compiled()` compute the same step; the compiled one is built only once a compile is wanted, and
    its first call compiles. `planned_steps` is the run's step budget, for the estimate of the remaining eager time.
    The comparison alternates compiled and eager steps (A B A B), so a machine whose speed drifts (shared cores)
    shifts both sides alike. `decisions` records what was chosen and the timings behind it.
    """

    def __init__(self, eager: Step, compiled: Callable[[], Step] | None, mode: bool | None, planned_steps: int,
                 show: bool = False) -> None:
        self.eager, self.make_compiled = eager, compiled
        self.planned, self.show = planned_steps, show
        self.compiled: Step | None = None
        self.steps = 0
        self.times: dict[str, list[float]] = {"eager": [], "compiled": []}
        self.decisions: dict[str, Any] = {"compile": "off"}
        self.current: Step = eager
        self.phase = "kept"
        if compiled is not None and mode is not False:
            self.decisions["compile"] = "pending"
            self.phase = "probe" if mode is None else "kept"
            if mode:
                self.current = self._build_compiled()
                self.decisions["compile"] = "on (as configured)"

    def __call__(self, batch: Any) -> torch.Tensor:
        if self.phase == "kept":
            return self.current(batch)
        side = "compiled" if self.phase == "compare" and self.steps % 2 == 0 else "eager"
        step = self.compiled if side == "compiled" else self.eager
        start = time.perf_counter()
        loss = step(batch)  # type: ignore[misc]
        seconds = time.perf_counter() - start
        self.steps += 1
        if self.phase != "kept":  # a failed compile may have just decided
            self._observe(side, seconds)
        return loss

    def _observe(self, side: str, seconds: float) -> None:
        """Collect step times and decide once enough are in."""
        times = self.times[side]
        times.append(seconds)
        if side == "compiled" and len(times) == 1:
            self.decisions["first_compiled_step_seconds"] = seconds  # includes the compile
        if self.phase == "probe":
            if len(times) < WARM_STEPS + TIMED_STEPS:
                return
            per_step = _median(times[WARM_STEPS:])
            remaining = max(self.planned - self.steps, 0) * per_step
            self.decisions.update(eager_step_seconds=per_step, estimated_eager_seconds=remaining)
            if remaining > COMPILE_WORTH_SECONDS:
                self.compiled = self._build_compiled()
                self.phase = "compare"
                self.times["eager"] = []
                self.decisions["compile_started_at_step"] = self.steps
            else:
                self._keep(self.eager, f"eager (run estimated at {remaining:.0f} s eager, too short to repay a "
                                       "compile)")
            return
        eager, compiled = self.times["eager"], self.times["compiled"][2:]  # the first compiled calls compile
        if len(eager) < TIMED_STEPS or len(compiled) < TIMED_STEPS:
            return
        e, c = _median(eager), _median(compiled)
        self.decisions.update(eager_step_seconds=e, compiled_step_seconds=c)
        if c < e:
            self._keep(self.compiled, f"compiled (step {c * 1e3:.1f} ms vs eager {e * 1e3:.1f} ms, alternated)")
        else:
            self._keep(self.eager, f"eager (compiled step {c * 1e3:.1f} ms >= eager {e * 1e3:.1f} ms, alternated)")

    def _build_compiled(self) -> Step:
        """The compiled step, wrapped so that a compile failure falls back to eager for the rest of the run."""
        assert self.make_compiled is not None
        compiled = self.make_compiled()

        def guarded(batch: Any) -> torch.Tensor:
            try:
                return compiled(batch)
            except Exception as exc:  # torch.compile raises many types (BackendCompilerFailed, Unsupported, ...)
                warnings.warn(f"train.compile: torch.compile failed ({type(exc).__name__}: {str(exc)[:200]}); "
                              "training continues eager", stacklevel=2)
                self._keep(self.eager, f"eager (compile failed: {type(exc).__name__})")
                return self.eager(batch)

        self.compiled = guarded
        return guarded

    def _keep(self, step: Step, why: str) -> None:
        """Stop measuring: `step` runs from now on."""
        self.current, self.phase = step, "kept"
        self.decisions["compile"] = why
        if self.show:
            tqdm.write(f"compile: {why}")


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]
