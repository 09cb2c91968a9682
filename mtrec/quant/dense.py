"""INT8 / FP16 dense layers on FBGEMM: drop-in inference replacements for `BatchedLinear` and `nn.Linear`.

INT8 weights are int8 per output channel (symmetric, scale = max|w| / 127). Activations use a static scale and
zero point calibrated on calibration data (`calibrate`, after SAMP): FBGEMM quantizes the input with them and runs
the int8 GEMM (`linear_with_input_q_dq_qweight_dq_output_fp32`), so a row's output never depends on the other rows
of its batch (dynamic quantization took the activation range of the whole batch: the same row scored differently
in different company). An uncalibrated layer quantizes each row with its own scale and multiplies in exact int32
(`torch._int_mm`): also independent of the batch, slower. FP16 keeps fp16 weights and computes in fp32
(`linear_dynamic_fp16`). A stack of `n` members whose input is shared ([B, in]) runs as ONE GEMM over the
members' concatenated weights; a member-first input ([n, B, in]) runs one GEMM per member (FBGEMM has no
batched int8 GEMM). A following ReLU can be fused into the kernel (`relu=True`). Inside an `Int8Chain` (the
nn.Sequential of a converted MLP) a calibrated int8 layer followed by another requantizes its int32 sums straight
to the next layer's static input scale (`quantized::linear_relu`, uint8 out): the fp32 activation between them is
never written, read back and quantized again (at batch 512, the 512 x 768 fp32 output of the experts' first layer
cost more than its GEMM).

Only plain tensors are state (int8/fp16 weights, fp32 scales and bias), so `weights_only` loading works; the
FBGEMM packed weights are rebuilt lazily after construction, a state load, a deep copy or unpickling.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtrec.models.layers import BatchedLinear
from mtrec.quant.precision import QuantizationError

_OPS = {
    ("int8", False): torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32,
    ("int8", True): torch.ops.quantized.linear_with_input_q_dq_qweight_dq_relu_output_fp32,
    ("fp16", False): torch.ops.quantized.linear_dynamic_fp16,
    ("fp16", True): torch.ops.quantized.linear_relu_dynamic_fp16,
}


@lru_cache(maxsize=1)
def reduce_range() -> bool:
    """Whether activations must use 7 bits: FBGEMM's u8 x s8 kernels can saturate int16 sums without VNNI."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True
    return not ("avx512_vnni" in flags or "avx_vnni" in flags)


def activation_qparams(low: float, high: float) -> tuple[float, int]:
    """(scale, zero point) of an unsigned 8-bit (7-bit without VNNI) affine quantization covering [low, high] and 0."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    levels = 127 if reduce_range() else 255
    scale = (high - low) / levels if high > low else 1.0
    return scale, int(min(max(round(-low / scale), 0), levels))


def int8_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8 of `weight` [..., out, in]: (int8 values in [-127, 127], fp32 scales [..., out])."""
    amax = weight.detach().abs().amax(dim=-1)
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax)).float()
    q = torch.clamp(torch.round(weight.detach() / scale.unsqueeze(-1)), -127, 127).to(torch.int8)
    return q, scale


@contextmanager
def _quantized_tensors() -> Iterator[None]:
    """FBGEMM's int8 ops still take and return quantized tensors, whose creation torch 2.13 deprecates (a warning)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.quantize_per_tensor, torch.quantize_per_channel",
                                category=UserWarning)
        yield


def _prepack(precision: str, weight: torch.Tensor, scale: torch.Tensor | None, bias: torch.Tensor) -> Any:
    """FBGEMM packed params of one [out, in] weight (int8 values + per-row scales, or fp16)."""
    if precision == "fp16":
        return torch.ops.quantized.linear_prepack_fp16(weight.float(), bias)
    zero = torch.zeros(weight.shape[0], dtype=torch.long)
    with _quantized_tensors():
        qweight = torch.quantize_per_channel(weight.float() * scale.unsqueeze(1), scale.double(), zero, 0,
                                             torch.qint8)
    return torch.ops.quantized.linear_prepack(qweight, bias)


class _PackedLinear(nn.Module):
    """Shared state and kernels of the quantized layers: `n` members' weights [n, out, in] and bias [n, out]."""

    def __init__(self, n: int, in_features: int, out_features: int, precision: str, relu: bool = False) -> None:
        super().__init__()
        if precision not in ("int8", "fp16"):
            raise QuantizationError(f"dense layers run in int8 or fp16 (fp32 keeps the original), got {precision!r}")
        self.n, self.in_features, self.out_features = n, in_features, out_features
        self.precision, self.relu = precision, relu
        dtype = torch.int8 if precision == "int8" else torch.float16
        self.register_buffer("weight", torch.zeros(n, out_features, in_features, dtype=dtype))
        self.register_buffer("scale", torch.ones(n, out_features) if precision == "int8" else torch.zeros(0))
        self.register_buffer("bias", torch.zeros(n, out_features))
        # int8: static activation (scale, zero point) from calibration; scale 0 = uncalibrated (per-row scales)
        self.register_buffer("input_qparams", torch.zeros(2 if precision == "int8" else 0, dtype=torch.float64))
        self._members: list[Any] | None = None
        self._shared: Any = None
        self._int_weights: list[torch.Tensor] | None = None
        self._qparams: tuple[float, int] | None = None

    def set_weights(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        """Quantize fp32 weights [n, out, in] (and bias [n, out], None = zeros) into this layer's state."""
        with torch.no_grad():
            if self.precision == "int8":
                q, scale = int8_rows(weight)
                self.weight.copy_(q)
                self.scale.copy_(scale)
            else:
                self.weight.copy_(weight.detach().to(torch.float16))
            self.bias.copy_(bias.detach() if bias is not None else torch.zeros_like(self.bias))
        self._invalidate()

    def calibrate(self, low: float, high: float) -> None:
        """Fix the activation quantization to cover [low, high] (the input range seen on calibration data)."""
        if self.precision == "int8":
            scale, zero_point = activation_qparams(low, high)
            self.input_qparams.copy_(torch.tensor([scale, zero_point], dtype=torch.float64))
        self._qparams = None

    @property
    def calibrated(self) -> bool:
        """Whether an int8 layer has static activation parameters."""
        return self.precision == "int8" and self.qparams()[0] > 0

    def qparams(self) -> tuple[float, int]:
        """The static input (scale, zero point) as Python numbers (scale 0: uncalibrated), read once."""
        if self._qparams is None:
            scale, zero_point = self.input_qparams.tolist() if self.precision == "int8" else (0.0, 0)
            self._qparams = (float(scale), int(zero_point))
        return self._qparams

    def _invalidate(self) -> None:
        self._members, self._shared, self._int_weights, self._qparams = None, None, None, None

    def _pack(self, weight: torch.Tensor, scale: torch.Tensor | None, bias: torch.Tensor) -> Any:
        return _prepack(self.precision, weight, scale, bias)

    def members(self) -> list[Any]:
        """One packed weight per member (built on first use)."""
        if self._members is None:
            scales = self.scale if self.precision == "int8" else [None] * self.n
            self._members = [self._pack(self.weight[i], scales[i], self.bias[i]) for i in range(self.n)]
        return self._members

    def shared(self) -> Any:
        """All members' weights packed as one [n * out, in] GEMM (built on first use)."""
        if self._shared is None:
            scale = self.scale.reshape(-1) if self.precision == "int8" else None
            self._shared = self._pack(self.weight.reshape(-1, self.in_features), scale, self.bias.reshape(-1))
        return self._shared

    def run(self, x: torch.Tensor, packed: Any, member: int | None = None,
            emit: tuple[float, int] | None = None) -> torch.Tensor:
        """One FBGEMM call on a 2-D input (`member` None: all members' shared GEMM). A calibrated int8 layer takes a
        uint8 (quantized) input at its own input scale, and with `emit` (the next layer's input scale and zero
        point) returns uint8 at that scale; otherwise fp32."""
        if self.precision == "fp16":
            return _OPS[("fp16", self.relu)](x, packed)
        if not self.calibrated:
            return self._per_row(x, member)
        scale, zero_point = self.qparams()
        if emit is None and not x.is_quantized:
            return _OPS[("int8", self.relu)](x.float().contiguous(), scale, zero_point, packed)
        with _quantized_tensors():
            if not x.is_quantized:
                x = torch.quantize_per_tensor(x.float(), scale, zero_point, torch.quint8)
            x = x.contiguous()
            if emit is None:  # uint8 in, fp32 out: the dequantized values requantize to the same integers
                return _OPS[("int8", self.relu)](x.dequantize(), scale, zero_point, packed)
            op = torch.ops.quantized.linear_relu if self.relu else torch.ops.quantized.linear
            return op(x, packed, emit[0], emit[1])

    def _per_row(self, x: torch.Tensor, member: int | None) -> torch.Tensor:
        """Uncalibrated int8: each row quantized with its own symmetric scale, exact int32 products."""
        if self._int_weights is None:
            self._int_weights = [self.weight.reshape(-1, self.in_features).t().contiguous(),
                                 *(self.weight[i].t().contiguous() for i in range(self.n))]
        weight = self._int_weights[0 if member is None else member + 1]
        w_scale = self.scale.reshape(-1) if member is None else self.scale[member]
        bias = self.bias.reshape(-1) if member is None else self.bias[member]
        amax = x.detach().abs().amax(dim=1, keepdim=True).float()
        row_scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
        q = torch.clamp(torch.round(x.float() / row_scale), -127, 127).to(torch.int8)
        y = torch._int_mm(q, weight).float() * (row_scale * w_scale) + bias
        return torch.relu(y) if self.relu else y

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._invalidate()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_members"], state["_shared"], state["_int_weights"], state["_qparams"] = None, None, None, None
        return state

    def extra_repr(self) -> str:
        return (f"n={self.n}, in_features={self.in_features}, out_features={self.out_features}, "
                f"precision={self.precision}, relu={self.relu}")


class QuantBatchedLinear(_PackedLinear):
    """`BatchedLinear` in int8/fp16: shared [B, in] -> one GEMM; member-first [n, B, in] -> one GEMM per member."""

    @classmethod
    def from_float(cls, layer: BatchedLinear, precision: str, relu: bool = False) -> QuantBatchedLinear:
        """Quantize a trained `BatchedLinear` (weights [n, in, out], bias [n, 1, out])."""
        out = cls(layer.n, layer.in_features, layer.out_features, precision, relu)
        out.set_weights(layer.weight.transpose(1, 2), layer.bias.squeeze(1))
        return out

    def forward(self, x: torch.Tensor, emit: tuple[float, int] | None = None) -> torch.Tensor:
        if x.dim() == 2:
            y = self.run(x, self.shared(), emit=emit)
            return y.view(x.shape[0], self.n, self.out_features).transpose(0, 1)
        packed = self.members()
        return torch.stack([self.run(x[i], packed[i], i, emit) for i in range(self.n)])


class QuantLinear(_PackedLinear):
    """`nn.Linear` in int8/fp16: [..., in] -> [..., out]."""

    @classmethod
    def from_float(cls, layer: nn.Linear, precision: str, relu: bool = False) -> QuantLinear:
        """Quantize a trained `nn.Linear`."""
        out = cls(1, layer.in_features, layer.out_features, precision, relu)
        out.set_weights(layer.weight.unsqueeze(0), None if layer.bias is None else layer.bias.unsqueeze(0))
        return out

    def forward(self, x: torch.Tensor, emit: tuple[float, int] | None = None) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        return self.run(flat, self.shared(), emit=emit).reshape(*x.shape[:-1], self.out_features)


class Int8Chain(nn.Sequential):
    """A converted MLP's nn.Sequential: a calibrated int8 layer whose next layer (past the Identity of a fused ReLU)
    is also calibrated int8 hands it uint8 at that layer's input scale instead of fp32; else as nn.Sequential.

    Which int8 layer follows which is worked out once per set of children (swapping a child, as the planner's
    workbench does, redoes it); whether both are calibrated is read from the layers, whose cached input scale
    `calibrate` and a state load reset."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer, following in self._steps():
            if following is not None and layer.calibrated and following.calibrated:
                x = layer(x, following.qparams())
            else:
                x = layer(x)
        return x

    def _steps(self) -> list[tuple[nn.Module, _PackedLinear | None]]:
        """Each child with the int8 layer right after it (only Identities between) when both are int8 layers."""
        layers = tuple(self._modules.values())
        if getattr(self, "_steps_of", None) != layers:
            self._plan = [(layer, _next_int8(layers, i) if isinstance(layer, _PackedLinear) else None)
                          for i, layer in enumerate(layers)]
            self._steps_of = layers
        return self._plan


def _next_int8(layers: tuple[nn.Module, ...], i: int) -> _PackedLinear | None:
    """The int8 layer right after layers[i] (only Identities between), if there is one."""
    for layer in layers[i + 1:]:
        if isinstance(layer, nn.Identity):
            continue
        return layer if isinstance(layer, _PackedLinear) and layer.precision == "int8" else None
    return None


def chain(root: nn.Module, path: str) -> None:
    """Make the nn.Sequential at `path` in `root` an Int8Chain (same children, same state keys); else nothing."""
    parent = root.get_submodule(path)
    if not path or type(parent) is not nn.Sequential:
        return
    replacement = Int8Chain(OrderedDict(parent._modules))
    replacement.train(parent.training)
    owner_path, _, name = path.rpartition(".")
    setattr(root.get_submodule(owner_path), name, replacement)


def quantize_dense(layer: nn.Module, precision: str, relu: bool = False,
                   input_range: tuple[float, float] | None = None) -> nn.Module:
    """The int8/fp16 replacement of a `BatchedLinear` or `nn.Linear` (int8 activations calibrated to `input_range`
    when given); the layer itself for fp32."""
    if precision == "fp32":
        return layer
    if isinstance(layer, BatchedLinear):
        out: _PackedLinear = QuantBatchedLinear.from_float(layer, precision, relu)
    elif isinstance(layer, nn.Linear):
        out = QuantLinear.from_float(layer, precision, relu)
    else:
        raise QuantizationError(f"cannot quantize a {type(layer).__name__}; dense units are BatchedLinear or "
                                "nn.Linear")
    if input_range is not None:
        out.calibrate(*input_range)
    return out
