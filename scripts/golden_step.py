"""The golden step of tests/golden_step.rs, computed by an independent PyTorch implementation.

Reads our initial weights and a fixed batch (tokens, masks, condition values, noise x0, data x1,
times t), as written by the Rust test `export_golden_step_inputs`; runs one forward pass,
flow-matching loss and backward in float64; and writes the fixture: the inputs, plus x_t, u,
the velocity of every target token, the loss and the gradient of every parameter.

    python golden_step.py INPUTS.safetensors FIXTURE.safetensors

Needs torch and safetensors (scripts/golden-step.sh runs it). The network below is written from
the architecture (docs/architecture.md): per token the features [value, label embedding,
position embedding, t, group embedding] go through one Linear layer to the model width; then
post-LN encoder blocks x = LN(x + MHA(x)), x = LN(x + MLP(x)) with bias-free attention
projections, a key-padding mask, and an MLP of n_ff Linear(d, d) + ReLU layers; a Linear head
reads the target tokens. Parameters are held the PyTorch way (separate q, k, v and out
projections, weights as [out, in]) and mapped from and to our names, so that nothing of our
layout is reused.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file, save_file

# Our layer norm's epsilon (src/nn/norm.rs). The reference implementation's Flax LayerNorm
# defaults to 1e-6; `main` prints what that difference does to this step.
LAYER_NORM_EPS = 1e-5


@dataclass
class Config:
    width: int
    layers: int
    heads: int
    n_ff: int
    label_dim: int
    pos_dim: int
    group_dim: int
    n_labels: int
    max_positions: int
    max_groups: int


class Attention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, d, bias=False)
        self.v = nn.Linear(d, d, bias=False)
        self.o = nn.Linear(d, d, bias=False)

    def forward(self, x, key_mask):
        b, n, d = x.shape
        hd = d // self.heads

        def split(z):
            return z.view(b, n, self.heads, hd).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) * hd**-0.5
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        y = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.o(y.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, c: Config, eps: float):
        super().__init__()
        self.attn = Attention(c.width, c.heads)
        self.ln1 = nn.LayerNorm(c.width, eps=eps)
        self.ff = nn.ModuleList([nn.Linear(c.width, c.width) for _ in range(c.n_ff)])
        self.ln2 = nn.LayerNorm(c.width, eps=eps)

    def forward(self, x, key_mask):
        x = self.ln1(x + self.attn(x, key_mask))
        h = x
        for lin in self.ff:
            h = torch.relu(lin(h))
        return self.ln2(x + h)


class Tfmpe(nn.Module):
    def __init__(self, c: Config, eps: float):
        super().__init__()
        self.label_emb = nn.Embedding(c.n_labels, c.label_dim)
        self.pos_emb = nn.Embedding(c.max_positions, c.pos_dim)
        self.group_emb = nn.Embedding(c.max_groups, c.group_dim)
        in_dim = 1 + c.label_dim + c.pos_dim + 1 + c.group_dim
        self.embed = nn.Linear(in_dim, c.width)
        self.blocks = nn.ModuleList([Block(c, eps) for _ in range(c.layers)])
        self.head = nn.Linear(c.width, 1)

    def forward(self, values, t, labels, positions, groups, key_mask, n_cond):
        """values, labels, positions, groups, key_mask: [batch, tokens]; t: [batch]."""
        b, n = values.shape
        x = torch.cat(
            [
                values[..., None],
                self.label_emb(labels),
                self.pos_emb(positions),
                t[:, None, None].expand(b, n, 1),
                self.group_emb(groups),
            ],
            dim=-1,
        )
        x = self.embed(x)
        for blk in self.blocks:
            x = blk(x, key_mask)
        return self.head(x[:, n_cond:])[..., 0]


def torch_parts(model: Tfmpe, name: str):
    """Our parameter `name` as (PyTorch parameter, column slice of ours, transposed) parts."""
    d = model.embed.out_features
    head, *rest = name.split(".")
    if head == "embed":
        kind, field = rest
        if kind == "linear":
            return [(getattr(model.embed, field), None, field == "weight")]
        table = {"label": model.label_emb, "position": model.pos_emb, "group": model.group_emb}
        return [(table[kind].weight, None, False)]
    if head == "head":
        return [(getattr(model.head, rest[0]), None, rest[0] == "weight")]
    # encoder.{layer}.{attn.qkv | attn.out | norm1 | ff.{i} | norm2}.{weight | bias}
    blk = model.blocks[int(rest[0])]
    part, field = rest[1:-1], rest[-1]
    if part == ["attn", "qkv"]:
        a = blk.attn
        return [(a.q.weight, slice(0, d), True), (a.k.weight, slice(d, 2 * d), True),
                (a.v.weight, slice(2 * d, 3 * d), True)]
    if part == ["attn", "out"]:
        return [(blk.attn.o.weight, None, True)]
    if part[0] == "ff":
        return [(getattr(blk.ff[int(part[1])], field), None, field == "weight")]
    norm = {"norm1": blk.ln1, "norm2": blk.ln2}[part[0]]
    return [(getattr(norm, field), None, False)]


def load_ours(model: Tfmpe, inputs: dict) -> list[str]:
    names = [k[len("param."):] for k in inputs if k.startswith("param.")]
    covered = set()
    with torch.no_grad():
        for name in names:
            ours = inputs["param." + name].double()
            for p, cols, transposed in torch_parts(model, name):
                w = ours if cols is None else ours[:, cols]
                p.copy_(w.T if transposed else w)
                covered.add(id(p))
    missing = [n for n, p in model.named_parameters() if id(p) not in covered]
    if missing:
        sys.exit(f"the inputs have no weights for {missing}")
    return names


def grads_ours(model: Tfmpe, name: str) -> torch.Tensor:
    parts = [(p.grad.T if transposed else p.grad) for p, _, transposed in torch_parts(model, name)]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def step(inputs: dict, config: Config, sigma_min: float, eps: float, dtype):
    """One forward, loss and backward; returns the model and the named results."""
    model = Tfmpe(config, eps).to(dtype)
    load_ours(model, inputs)
    f = {k: inputs[k].to(dtype) for k in ("batch.cond", "batch.x0", "batch.x1", "batch.t")}
    ids = {k: inputs["tokens." + k].long() for k in ("labels", "positions", "groups")}
    key_mask = inputs["tokens.key_mask"] > 0.5
    target_mask = inputs["tokens.target_mask"].to(dtype)
    x0, x1, t = f["batch.x0"], f["batch.x1"], f["batch.t"]
    tt = t[:, None]
    xt = (1 - (1 - sigma_min) * tt) * x0 + tt * x1
    u = x1 - (1 - sigma_min) * x0
    values = torch.cat([f["batch.cond"], xt], dim=1)
    n_cond = f["batch.cond"].shape[1]
    v = model(values, t, ids["labels"], ids["positions"], ids["groups"], key_mask, n_cond)
    loss = ((v - u) ** 2 * target_mask).sum() / target_mask.sum().clamp_min(1)
    loss.backward()
    out = {"expect.xt": xt, "expect.u": u, "expect.velocity": v, "expect.loss": loss.reshape(1)}
    for k in inputs:
        if k.startswith("param."):
            name = k[len("param."):]
            out["grad." + name] = grads_ours(model, name)
    return {k: x.detach().to(torch.float64).contiguous() for k, x in out.items()}


def scaled_diff(a: dict, b: dict) -> dict:
    """max |a - b| / max |b| per tensor."""
    return {k: float((a[k] - b[k]).abs().max() / b[k].abs().max().clamp_min(1e-300)) for k in b}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    inputs = load_file(src)
    with safe_open(src, "pt") as fh:
        meta = fh.metadata()
    about = json.loads(meta["golden_step"])
    config = Config(**about["config"])
    # The float32 value our kernels use.
    sigma_min = torch.tensor(about["sigma_min"], dtype=torch.float32).item()
    if about["layer_norm_eps"] != LAYER_NORM_EPS:
        sys.exit(f"the network's layer norm epsilon is {about['layer_norm_eps']}, "
                 f"this script's {LAYER_NORM_EPS}: which one does the architecture want?")

    want = step(inputs, config, sigma_min, LAYER_NORM_EPS, torch.float64)
    f32 = scaled_diff(step(inputs, config, sigma_min, LAYER_NORM_EPS, torch.float32), want)
    flax_eps = scaled_diff(step(inputs, config, sigma_min, 1e-6, torch.float64), want)
    print(f"loss {want['expect.loss'].item():.10f}")
    for what, d in (("PyTorch float32 vs float64", f32),
                    ("layer norm eps 1e-6 vs 1e-5 (float64)", flax_eps)):
        grads = {k: x for k, x in d.items() if k.startswith("grad.")}
        worst = max(grads, key=grads.get)
        print(f"{what}, max |diff| / max |value|: velocity {d['expect.velocity']:.2e}, "
              f"loss {d['expect.loss']:.2e}, gradients {grads[worst]:.2e} ({worst})")

    about["reference"] = f"scripts/golden_step.py, PyTorch {torch.__version__}, float64"
    # Sorted keys: the same inputs give the same bytes.
    save_file({**inputs, **want}, dst, metadata={"golden_step": json.dumps(about, sort_keys=True)})
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()
