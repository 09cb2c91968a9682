"""Building blocks of the multi-task backbones: batched experts, gates and towers, gradient reversal.

Per-member layers are stacked into one weight tensor so `n` experts (or `n` task towers) run as one
`baddbmm` instead of a Python loop. Tensors of such a stack are laid out member-first: `[n, B, width]`.
A 2-D input `[B, width]` is read by every member ("shared input").
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pretrain_stack.encoders.mlp import ACTIVATIONS
from pretrain_stack.errors import ConfigError


class BatchedLinear(nn.Module):
    """`n` independent Linear layers in one batched matmul: [n, B, in] or shared [B, in] -> [n, B, out]."""

    def __init__(self, n: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.n, self.in_features, self.out_features = n, in_features, out_features
        self.weight = nn.Parameter(torch.empty(n, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(n, 1, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Same distribution as `nn.Linear`'s default (uniform in +-1/sqrt(fan_in)), per member."""
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.n, -1, -1)
        return torch.baddbmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        return f"n={self.n}, in_features={self.in_features}, out_features={self.out_features}"


class BatchedBatchNorm(nn.Module):
    """BatchNorm1d of each member's features separately, on [n, B, width]."""

    def __init__(self, n: int, width: int) -> None:
        super().__init__()
        self.n, self.width = n, width
        self.norm = nn.BatchNorm1d(n * width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, b, w = x.shape
        flat = x.permute(1, 0, 2).reshape(b, n * w)
        return self.norm(flat).reshape(b, n, w).permute(1, 0, 2)


def activation(name: str, key: str = "activation") -> nn.Module:
    """The activation module called `name`; ConfigError naming `key` otherwise."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"{key}: expected one of {sorted(ACTIVATIONS)}, got {name!r}", key=key)
    return ACTIVATIONS[name]()


class BatchedMLP(nn.Module):
    """`n` MLPs of identical shape run together: Linear -> [BatchNorm] -> activation -> [Dropout] per width."""

    def __init__(self, n: int, input_dim: int, hidden: tuple[int, ...] | list[int], dropout: float = 0.0,
                 activation_name: str = "relu", batch_norm: bool = False) -> None:
        super().__init__()
        self.n = n
        layers: list[nn.Module] = []
        prev = input_dim
        for width in hidden:
            layers.append(BatchedLinear(n, prev, width))
            if batch_norm:
                layers.append(BatchedBatchNorm(n, width))
            layers.append(activation(activation_name))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            prev = width
        self.net = nn.Sequential(*layers)
        self.input_dim = input_dim
        self.output_dim = prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.net) == 0:
            return x.unsqueeze(0).expand(self.n, -1, -1) if x.dim() == 2 else x
        return self.net(x)


class BatchedTower(nn.Module):
    """`n` task towers: an MLP then a Linear to one logit; [n, B, d] (or shared [B, d]) -> logits [n, B]."""

    def __init__(self, n: int, input_dim: int, hidden: tuple[int, ...] | list[int], dropout: float = 0.0,
                 activation_name: str = "relu", batch_norm: bool = False) -> None:
        super().__init__()
        self.mlp = BatchedMLP(n, input_dim, hidden, dropout, activation_name, batch_norm)
        self.out = BatchedLinear(n, self.mlp.output_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.mlp(x)).squeeze(-1)


class BatchedGate(nn.Module):
    """`n` softmax gates over `num_experts`: [n, B, in] (or shared [B, in]) -> weights [n, B, num_experts]."""

    def __init__(self, n: int, input_dim: int, num_experts: int, hidden: tuple[int, ...] | list[int] = (),
                 activation_name: str = "relu") -> None:
        super().__init__()
        self.mlp = BatchedMLP(n, input_dim, hidden, 0.0, activation_name, False)
        self.out = BatchedLinear(n, self.mlp.output_dim, num_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.out(self.mlp(x)), dim=-1)


class TaskGroups(nn.Module):
    """Per-task modules kept in an `nn.ModuleList` of groups, each batching `sizes[k]` consecutive tasks.

    The initial tasks form one batched group; a task added later is appended as a new group, so the
    earlier groups (and their outputs) stay untouched. Input: [T, B, *] split across groups, or a shared
    [B, *] read by every group; output: the groups' [n_k, B, *] outputs concatenated to [T, B, *].
    """

    def __init__(self, first: nn.Module, size: int) -> None:
        super().__init__()
        self.groups = nn.ModuleList([first])
        self.sizes = [size]

    @property
    def num_tasks(self) -> int:
        """How many tasks the groups cover."""
        return sum(self.sizes)

    def append(self, module: nn.Module, size: int = 1) -> None:
        """Add a group for `size` new tasks after the existing ones."""
        self.groups.append(module)
        self.sizes.append(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.groups) == 1:
            return self.groups[0](x)
        if x.dim() == 2:
            return torch.cat([g(x) for g in self.groups], dim=0)
        parts = torch.split(x, self.sizes, dim=0)
        return torch.cat([g(p) for g, p in zip(self.groups, parts)], dim=0)


class _GradReverse(torch.autograd.Function):
    """Identity forward; gradient times -alpha backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return -ctx.alpha * grad, None


def grad_reverse(x: torch.Tensor, alpha: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Gradient-reversal layer (Ganin & Lempitsky 2015): forward identity, backward -alpha * grad."""
    return _GradReverse.apply(x, alpha if isinstance(alpha, torch.Tensor) else float(alpha))


def grl_alpha(progress: float | torch.Tensor, gamma: float = 10.0) -> float | torch.Tensor:
    """DANN schedule alpha = 2 / (1 + exp(-gamma * q)) - 1 (q = training progress in [0, 1]): 0 at the start,
    -> 1 at the end. A tensor q (e.g. a 0-d tensor, so torch.compile does not specialize on it) gives a tensor."""
    if isinstance(progress, torch.Tensor):
        q = progress.clamp(0.0, 1.0)
        return 2.0 / (1.0 + torch.exp(-gamma * q)) - 1.0
    q = min(max(float(progress), 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-gamma * q)) - 1.0


def mix_experts(gates: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Gate-weighted sum of experts: gates [T, B, E], experts [E, B, d] -> [T, B, d]."""
    return torch.einsum("tbe,ebd->tbd", gates, experts)


def to_batch_major(x: torch.Tensor) -> torch.Tensor:
    """[n, B, ...] -> [B, n, ...] (the layout callers see in logits and representations)."""
    return x.transpose(0, 1)


def check_at_least(value: int, minimum: int, key: str) -> None:
    """ConfigError naming `key` when an integer setting is below `minimum`."""
    if value < minimum:
        raise ConfigError(f"{key}: must be >= {minimum}, got {value}", key=key)


def check_widths(widths: tuple[int, ...] | list[int], key: str, allow_empty: bool = True) -> None:
    """ConfigError naming `key` when a list of layer widths is empty (if not allowed) or has a width < 1."""
    if not widths and not allow_empty:
        raise ConfigError(f"{key}: needs at least one layer width", key=key)
    for w in widths:
        if w < 1:
            raise ConfigError(f"{key}: layer widths must be >= 1, got {list(widths)}", key=key)


def check_expert_widths(expert_hidden: tuple[int, ...], tower_hidden: tuple[int, ...],
                        gate_hidden: tuple[int, ...]) -> None:
    """The width checks of every expert-and-gate encoder (mmoe, ple, stem, mptrec): experts need a layer."""
    check_widths(expert_hidden, "model.encoder.expert_hidden", allow_empty=False)
    check_widths(tower_hidden, "model.encoder.tower_hidden")
    check_widths(gate_hidden, "model.encoder.gate_hidden")


def check_common(tasks: list[str], dropout: float, where: str = "model.encoder") -> None:
    """Checks shared by every multi-task encoder: a non-empty, duplicate-free task list and 0 <= dropout < 1."""
    if not tasks:
        raise ConfigError(f"{where}.tasks: at least one task is required", key=f"{where}.tasks")
    if len(set(tasks)) != len(tasks):
        raise ConfigError(f"{where}.tasks: duplicate task names in {tasks}", key=f"{where}.tasks")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"{where}.dropout: must be in [0, 1), got {dropout}", key=f"{where}.dropout")
