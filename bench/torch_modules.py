"""Plain torch.nn definitions of the four full-size Karlo modules.

Written for bench/torch_side_by_side.py from the spec (../shared/spec/UNCLIP.md
§3, §4, §6-§8) and the same spec §12 configs as bench/karlo.go; no diffusers or
transformers. Module attributes are named so that state_dict() keys equal the
checkpoint keys (and the keys of bench/karlo.go's tables), so parameter and
tensor counts can be compared one to one.

Attention is written as diffusers' AttnProcessor does on torch 1.13 (no
scaled_dot_product_attention): baddbmm of Q·Kᵀ with the bias, softmax, bmm.

FLOP counting (count_flops) follows bench/karlo.go: 2 FLOPs per multiply-add
of nn.Linear, nn.Conv2d and the two attention products; nothing else.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------
# Karlo configs (spec §12), the same JSON as bench/karlo.go.

KARLO_TEXT = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                  num_hidden_layers=12, num_attention_heads=12,
                  max_position_embeddings=77, hidden_act="quick_gelu",
                  layer_norm_eps=1e-5, projection_dim=768)

KARLO_PRIOR = dict(num_attention_heads=32, attention_head_dim=64, num_layers=20,
                   embedding_dim=768, num_embeddings=77, additional_embeddings=4)

KARLO_DECODER = dict(
    _class_name="UNet2DConditionModel", in_channels=3, out_channels=6,
    down_block_types=["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D",
                      "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D"],
    mid_block_type="UNetMidBlock2DSimpleCrossAttn",
    up_block_types=["SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D",
                    "SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"],
    block_out_channels=[320, 640, 960, 1280], layers_per_block=3,
    norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=1536,
    attention_head_dim=64, class_embed_type="identity",
    resnet_time_scale_shift="scale_shift", add_attention=False)

KARLO_SUPER_RES = dict(
    _class_name="UNet2DModel", in_channels=6, out_channels=3,
    down_block_types=["ResnetDownsampleBlock2D"] * 4,
    mid_block_type="UNetMidBlock2D",
    up_block_types=["ResnetUpsampleBlock2D"] * 4,
    block_out_channels=[320, 640, 960, 1280], layers_per_block=3,
    norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=0,
    attention_head_dim=8, class_embed_type=None,
    resnet_time_scale_shift="default", add_attention=False)

# Spec §12 parameter and tensor counts.
SPEC_PARAMS = {"text": 123_650_304, "prior": 1_022_030_080,
               "decoder": 885_439_686, "superres": 691_579_523}
SPEC_TENSORS = {"text": 197, "prior": 338, "decoder": 716, "superres": 408}

# ---------------------------------------------------------------------------
# FLOP counting

_attn_macs = [0]


def _count_attn(macs):
    _attn_macs[0] += macs


def _attention(q, k, v, heads, scale, bias=None):
    """q [N, Lq, C], k, v [N, Lk, C]; bias broadcastable to [N, Lq, Lk]."""
    n, lq, c = q.shape
    lk = k.shape[1]
    d = c // heads

    def split(x):
        return x.reshape(n, -1, heads, d).permute(0, 2, 1, 3).reshape(n * heads, -1, d)

    q, k, v = split(q), split(k), split(v)
    if bias is None:
        scores = torch.baddbmm(torch.empty(n * heads, lq, lk, dtype=q.dtype, device=q.device), q, k.transpose(1, 2),
                               beta=0, alpha=scale)
    else:  # [N, Lq or 1, Lk] -> one copy per head, broadcast over queries
        bias = bias[:, None].expand(n, heads, *bias.shape[1:]).reshape(n * heads, *bias.shape[1:])
        scores = torch.baddbmm(bias, q, k.transpose(1, 2), alpha=scale)
    probs = scores.softmax(dim=-1)
    out = torch.bmm(probs, v)
    _count_attn(2 * n * lq * lk * c)
    return out.reshape(n, heads, lq, d).permute(0, 2, 1, 3).reshape(n, lq, c)


def count_flops(module, run):
    """Runs run() once with forward hooks on nn.Linear and nn.Conv2d and
    returns the FLOPs (2 per multiply-add, attention products included)."""
    macs = [0]

    def linear_hook(m, inp, out):
        macs[0] += out.numel() * m.in_features

    def conv_hook(m, inp, out):
        kh, kw = m.kernel_size
        macs[0] += out.numel() * (m.in_channels // m.groups) * kh * kw

    handles = []
    for m in module.modules():
        if isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
    _attn_macs[0] = 0
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return 2 * (macs[0] + _attn_macs[0])


# ---------------------------------------------------------------------------
# CLIP text encoder (spec §3)


class CLIPAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.scale = (d // heads) ** -0.5
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x, bias):
        o = _attention(self.q_proj(x), self.k_proj(x), self.v_proj(x), self.heads, self.scale, bias)
        return self.out_proj(o)


class CLIPMLP(nn.Module):
    def __init__(self, d, inter):
        super().__init__()
        self.fc1 = nn.Linear(d, inter)
        self.fc2 = nn.Linear(inter, d)

    def forward(self, x):
        h = self.fc1(x)
        h = h * torch.sigmoid(1.702 * h)  # quick_gelu
        return self.fc2(h)


class CLIPLayer(nn.Module):
    def __init__(self, d, inter, heads, eps):
        super().__init__()
        self.self_attn = CLIPAttention(d, heads)
        self.layer_norm1 = nn.LayerNorm(d, eps=eps)
        self.mlp = CLIPMLP(d, inter)
        self.layer_norm2 = nn.LayerNorm(d, eps=eps)

    def forward(self, h, bias):
        h = h + self.self_attn(self.layer_norm1(h), bias)
        return h + self.mlp(self.layer_norm2(h))


class CLIPEmbeddings(nn.Module):
    def __init__(self, vocab, pos, d):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, d)
        self.position_embedding = nn.Embedding(pos, d)


class CLIPEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layers = nn.ModuleList(CLIPLayer(c["hidden_size"], c["intermediate_size"],
                                              c["num_attention_heads"], c["layer_norm_eps"])
                                    for _ in range(c["num_hidden_layers"]))


class CLIPTextTransformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = CLIPEmbeddings(c["vocab_size"], c["max_position_embeddings"], c["hidden_size"])
        self.encoder = CLIPEncoder(c)
        self.final_layer_norm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])


class CLIPTextModelWithProjection(nn.Module):
    """forward(ids [N, L]) -> (text_embeds [N, E], last_hidden [N, L, D])."""

    def __init__(self, c):
        super().__init__()
        self.text_model = CLIPTextTransformer(c)
        self.text_projection = nn.Linear(c["hidden_size"], c["projection_dim"], bias=False)

    def forward(self, ids):
        n, l = ids.shape
        t = self.text_model
        h = t.embeddings.token_embedding(ids) + t.embeddings.position_embedding.weight[:l]
        causal = torch.full((l, l), torch.finfo(torch.float32).min, device=h.device).triu(1)
        bias = causal.expand(n, l, l)
        for layer in t.encoder.layers:
            h = layer(h, bias)
        h = t.final_layer_norm(h)
        pooled = h[torch.arange(n), ids.argmax(dim=-1)]
        return self.text_projection(pooled), h


# ---------------------------------------------------------------------------
# Prior (spec §4)


class TimestepEmbedding(nn.Module):
    def __init__(self, cin, dim):
        super().__init__()
        self.linear_1 = nn.Linear(cin, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


def timesteps(t, n, dim, device=None):
    """Sinusoidal projection (spec §6.1), flip_sin_to_cos, shift 0: [n, dim]."""
    half = dim // 2
    e = torch.arange(half, dtype=torch.float32, device=device) * (-math.log(10000)) / half
    a = float(t) * torch.exp(e)
    row = torch.cat([torch.cos(a), torch.sin(a)])
    return row.expand(n, dim).contiguous()


class PriorAttention(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.to_q = nn.Linear(w, w)
        self.to_k = nn.Linear(w, w)
        self.to_v = nn.Linear(w, w)
        self.to_out = nn.ModuleList([nn.Linear(w, w)])


class FeedForwardProj(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.proj = nn.Linear(w, 4 * w)


class FeedForward(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.net = nn.ModuleList([FeedForwardProj(w), nn.Identity(), nn.Linear(4 * w, w)])

    def forward(self, x):
        return self.net[2](F.gelu(self.net[0].proj(x)))


class PriorBlock(nn.Module):
    def __init__(self, w, heads):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(w)
        self.attn1 = PriorAttention(w)
        self.norm3 = nn.LayerNorm(w)
        self.ff = FeedForward(w)

    def forward(self, h, bias, scale):
        s = self.norm1(h)
        a = self.attn1
        o = _attention(a.to_q(s), a.to_k(s), a.to_v(s), self.heads, scale, bias)
        h = h + a.to_out[0](o)
        return h + self.ff(self.norm3(h))


class PriorTransformer(nn.Module):
    """forward(x [N, E], t, proj_embedding [N, E], enc [N, 77, E], mask [N, 77]) -> [N, E]."""

    def __init__(self, c):
        super().__init__()
        heads, hd = c["num_attention_heads"], c["attention_head_dim"]
        w, e = heads * hd, c["embedding_dim"]
        self.heads, self.scale, self.w = heads, hd ** -0.5, w
        seq = c["num_embeddings"] + c["additional_embeddings"]
        self.time_embedding = TimestepEmbedding(w, w)
        self.proj_in = nn.Linear(e, w)
        self.embedding_proj = nn.Linear(e, w)
        self.encoder_hidden_states_proj = nn.Linear(e, w)
        self.positional_embedding = nn.Parameter(torch.zeros(1, seq, w))
        self.prd_embedding = nn.Parameter(torch.zeros(1, 1, w))
        self.transformer_blocks = nn.ModuleList(PriorBlock(w, heads) for _ in range(c["num_layers"]))
        self.norm_out = nn.LayerNorm(w)
        self.proj_to_clip_embeddings = nn.Linear(w, e)
        self.clip_mean = nn.Parameter(torch.zeros(1, e))
        self.clip_std = nn.Parameter(torch.zeros(1, e))

    def forward(self, x, t, proj, enc, mask):
        n = x.shape[0]
        temb = self.time_embedding(timesteps(t, n, self.w, x.device))
        p = self.embedding_proj(proj)
        e = self.encoder_hidden_states_proj(enc)
        h = self.proj_in(x)
        seq = torch.cat([e, p[:, None], temb[:, None], h[:, None], self.prd_embedding.expand(n, 1, -1)], dim=1)
        seq = seq + self.positional_embedding
        l = seq.shape[1]
        tj = torch.cat([(1 - mask) * -10000.0, torch.zeros(n, l - mask.shape[1], device=x.device)], dim=1)
        causal = torch.full((l, l), -10000.0, device=x.device).triu(1)
        bias = tj[:, None, :] + causal[None]
        for blk in self.transformer_blocks:
            seq = blk(seq, bias, self.scale)
        seq = self.norm_out(seq)
        return self.proj_to_clip_embeddings(seq[:, -1])


# ---------------------------------------------------------------------------
# U-Nets (spec §6-§8)


class ResnetBlock2D(nn.Module):
    def __init__(self, cin, cout, temb, groups, eps, scale_shift, up=False, down=False):
        super().__init__()
        self.up, self.down, self.scale_shift = up, down, scale_shift
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, 2 * cout if scale_shift else cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, emb):
        h = F.silu(self.norm1(x))
        if self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        elif self.down:
            x = F.avg_pool2d(x, 2, 2)
            h = F.avg_pool2d(h, 2, 2)
        h = self.conv1(h)
        e = self.time_emb_proj(F.silu(emb))[:, :, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(F.silu(h))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class SpatialAttention(nn.Module):
    """Added-KV attention (spec §6.4) when ctx > 0, else plain self-attention."""

    def __init__(self, ch, heads, groups, eps, ctx):
        super().__init__()
        self.heads = heads
        self.scale = (ch // heads) ** -0.5
        self.group_norm = nn.GroupNorm(groups, ch, eps=eps)
        self.to_q = nn.Linear(ch, ch)
        self.to_k = nn.Linear(ch, ch)
        self.to_v = nn.Linear(ch, ch)
        if ctx:
            self.add_k_proj = nn.Linear(ctx, ch)
            self.add_v_proj = nn.Linear(ctx, ch)
        else:
            self.add_k_proj = self.add_v_proj = None
        self.to_out = nn.ModuleList([nn.Linear(ch, ch)])

    def forward(self, x, enc, bias):
        n, c, hh, ww = x.shape
        s = self.group_norm(x).reshape(n, c, hh * ww).transpose(1, 2)
        q, k, v = self.to_q(s), self.to_k(s), self.to_v(s)
        if self.add_k_proj is not None:
            k = torch.cat([self.add_k_proj(enc), k], dim=1)
            v = torch.cat([self.add_v_proj(enc), v], dim=1)
            if bias is not None:  # pad with zeros over the self keys
                bias = F.pad(bias, (0, hh * ww))
        else:
            bias = None
        o = self.to_out[0](_attention(q, k, v, self.heads, self.scale, bias))
        return o.transpose(1, 2).reshape(n, c, hh, ww) + x


class DownBlock(nn.Module):
    def __init__(self, typ, cin, cout, layers, downsample, rk, ak):
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock2D(cin if j == 0 else cout, cout, **rk) for j in range(layers))
        if typ == "SimpleCrossAttnDownBlock2D":
            self.attentions = nn.ModuleList(SpatialAttention(cout, **ak) for _ in range(layers))
        else:
            self.attentions = None
        if downsample:
            self.downsamplers = nn.ModuleList([ResnetBlock2D(cout, cout, down=True, **rk)])
        else:
            self.downsamplers = None

    def forward(self, h, emb, enc, bias, skips):
        for j, r in enumerate(self.resnets):
            h = r(h, emb)
            if self.attentions is not None:
                h = self.attentions[j](h, enc, bias)
            skips.append(h)
        if self.downsamplers is not None:
            h = self.downsamplers[0](h, emb)
            skips.append(h)
        return h


class MidBlock(nn.Module):
    def __init__(self, ch, attention, rk, ak):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(ch, ch, **rk), ResnetBlock2D(ch, ch, **rk)])
        self.attentions = nn.ModuleList([SpatialAttention(ch, **ak)]) if attention else None

    def forward(self, h, emb, enc, bias):
        h = self.resnets[0](h, emb)
        if self.attentions is not None:
            h = self.attentions[0](h, enc, bias)
        return self.resnets[1](h, emb)


class UpBlock(nn.Module):
    def __init__(self, typ, prev, cin, cout, layers, upsample, rk, ak):
        super().__init__()
        rs = []
        for j in range(layers):
            skip = cin if j == layers - 1 else cout
            rs.append(ResnetBlock2D((prev if j == 0 else cout) + skip, cout, **rk))
        self.resnets = nn.ModuleList(rs)
        if typ == "SimpleCrossAttnUpBlock2D":
            self.attentions = nn.ModuleList(SpatialAttention(cout, **ak) for _ in range(layers))
        else:
            self.attentions = None
        self.upsamplers = nn.ModuleList([ResnetBlock2D(cout, cout, up=True, **rk)]) if upsample else None

    def forward(self, h, emb, enc, bias, skips):
        for j, r in enumerate(self.resnets):
            h = r(torch.cat([h, skips.pop()], dim=1), emb)
            if self.attentions is not None:
                h = self.attentions[j](h, enc, bias)
        if self.upsamplers is not None:
            h = self.upsamplers[0](h, emb)
        return h


class UNet(nn.Module):
    """Decoder (UNet2DConditionModel) or super-res (UNet2DModel).

    forward(x [N, Cin, H, W], t, enc [N, L, X] or None, class_labels [N, T] or None,
    mask [N, L] or None) -> [N, Cout, H, W]."""

    def __init__(self, c):
        super().__init__()
        boc = c["block_out_channels"]
        nb = len(boc)
        temb = 4 * boc[0]
        self.c0, self.c = boc[0], c
        g, eps = c["norm_num_groups"], c["norm_eps"]
        hd = c["attention_head_dim"]
        rk = dict(temb=temb, groups=g, eps=eps, scale_shift=c["resnet_time_scale_shift"] == "scale_shift")

        def ak(ch, ctx):
            return dict(heads=ch // hd if hd else 1, groups=g, eps=eps, ctx=ctx)

        cross = c["_class_name"] == "UNet2DConditionModel"
        xd = c["cross_attention_dim"] if cross else 0
        self.conv_in = nn.Conv2d(c["in_channels"], boc[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(boc[0], temb)
        downs, out = [], boc[0]
        for i, typ in enumerate(c["down_block_types"]):
            cin, out = out, boc[i]
            downs.append(DownBlock(typ, cin, out, c["layers_per_block"], i < nb - 1, rk, ak(out, xd)))
        self.down_blocks = nn.ModuleList(downs)
        mid_attn = c["mid_block_type"] == "UNetMidBlock2DSimpleCrossAttn" or c["add_attention"]
        self.mid_block = MidBlock(boc[-1], mid_attn, rk, ak(boc[-1], xd))
        ups, prev = [], boc[-1]
        for i, typ in enumerate(c["up_block_types"]):
            cout, cin = boc[nb - 1 - i], boc[max(nb - 2 - i, 0)]
            ups.append(UpBlock(typ, prev, cin, cout, c["layers_per_block"] + 1, i < nb - 1, rk, ak(cout, xd)))
            prev = cout
        self.up_blocks = nn.ModuleList(ups)
        self.conv_norm_out = nn.GroupNorm(g, boc[0], eps=eps)
        self.conv_out = nn.Conv2d(boc[0], c["out_channels"], 3, padding=1)

    def forward(self, x, t, enc=None, class_labels=None, mask=None):
        n = x.shape[0]
        emb = self.time_embedding(timesteps(t, n, self.c0, x.device))
        if class_labels is not None:
            emb = emb + class_labels
        bias = None if mask is None else ((1 - mask) * -10000.0)[:, None, :]
        h = self.conv_in(x)
        skips = [h]
        for blk in self.down_blocks:
            h = blk(h, emb, enc, bias, skips)
        h = self.mid_block(h, emb, enc, bias)
        for blk in self.up_blocks:
            h = blk(h, emb, enc, bias, skips)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


# ---------------------------------------------------------------------------
# The benchmark modules, with the shapes of bench/karlo.go.


def text_mask(n, l):
    """Row r keeps its first 2 + 7·r positions (bench/karlo.go textMask)."""
    m = torch.zeros(n, l)
    for r in range(n):
        m[r, :min(l, 2 + 7 * r)] = 1
    return m


def build(name, device="cpu"):
    """Returns (module, run) for "text", "prior", "decoder" or "superres" at
    full size with PyTorch's default random initialisation; run() is one
    forward pass on fixed inputs of the issue-5 shapes. With device="meta"
    the module and inputs have shapes but no data (for count_flops)."""
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        if device == "meta":
            return torch.empty(*shape, device="meta")
        return torch.rand(*shape, generator=g) * 2 - 1

    def mask(n, l):
        return text_mask(n, l).to(device)

    if name == "text":
        m = CLIPTextModelWithProjection(KARLO_TEXT)
        n, l, v = 2, 77, KARLO_TEXT["vocab_size"]
        ids = torch.randint(0, v - 2, (n, l), generator=g)
        for r in range(n):
            eos = min(l - 1, 1 + 7 * r)
            ids[r, 0], ids[r, eos], ids[r, eos + 1:] = v - 2, v - 1, 256
        ids = ids.to(device)
        m = m.to(device).eval()
        return m, lambda: m(ids)
    if name == "prior":
        m = PriorTransformer(KARLO_PRIOR).to(device).eval()
        n, e = 2, KARLO_PRIOR["embedding_dim"]
        x, proj, enc, am = rand(n, e), rand(n, e), rand(n, 77, e), mask(n, 77)
        return m, lambda: m(x, 999, proj, enc, am)
    if name == "decoder":
        m = UNet(KARLO_DECODER).to(device).eval()
        n = 2
        x, enc, labels, am = rand(n, 3, 64, 64), rand(n, 81, 1536), rand(n, 1280), mask(n, 81)
        return m, lambda: m(x, 999, enc, labels, am)
    if name == "superres":
        m = UNet(KARLO_SUPER_RES).to(device).eval()
        x = rand(1, 6, 256, 256)
        return m, lambda: m(x, 999)
    raise ValueError(f"unknown module {name!r}")


def param_count(module):
    sd = module.state_dict()
    return len(sd), sum(t.numel() for t in sd.values())
