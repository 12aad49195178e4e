"""Can timm's MaxxVit express torchvision's maxvit_t (the CAGE authors' network)? Evidence for README "The model".

Builds timm's closest MaxxVit configuration (torchvision's widths/depths, BN eps 1e-3, exact GELU, symmetric
padding, 3 x 3 average-pool shortcut, SE on 1/4 of the output width, Swin-style relative-position bias, q/k/v
not interleaved per head), maps a random torchvision ``maxvit_t``'s weights onto it by name, and prints the largest
difference of the trunk features on random input: once as configured, once after three module substitutions
that no timm configuration option offers (stage-0 shortcut projection, pool counting padded zeros, attention
scaled by the width instead of the head width). Usage: ``python scripts/check_timm_maxvit_t.py`` (CPU, ~1 min).
"""
import re

import torch
import torchvision
from torch import nn
from timm.models.maxxvit import MaxxVit, MaxxVitCfg, MaxxVitConvCfg, MaxxVitTransformerCfg

torch.manual_seed(0)
tv = torchvision.models.maxvit_t(weights=None).eval()
with torch.no_grad():
    for m in tv.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
            m.weight.uniform_(0.5, 1.5); m.bias.uniform_(-0.2, 0.2)
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1); m.running_var.uniform_(0.5, 1.5)
cfg = MaxxVitCfg(embed_dim=(64, 128, 256, 512), depths=(2, 2, 5, 2), block_type=("M",) * 4, stem_width=64,
                 stem_bias=True, head_hidden_size=512,
                 conv_cfg=MaxxVitConvCfg(norm_eps=1e-3, pool_type="avg"),
                 transformer_cfg=MaxxVitTransformerCfg(norm_eps=1e-5, head_first=False, rel_pos_type="bias"))

def build(patch):
    t = MaxxVit(cfg, img_size=224, num_classes=0).eval()
    if patch:
        s0 = t.stages[0].blocks[0].conv.shortcut
        s0.expand = nn.Conv2d(64, 64, 1)  # torchvision projects the stage-0 shortcut although 64 -> 64
        for m in list(t.modules()):
            if type(m).__name__ == "Downsample2d":
                m.pool = nn.AvgPool2d(3, 2, 1)  # count_include_pad=True (timm's 'avg' uses False)
            if type(m).__name__ == "AttentionCl":
                m.fused_attn = False
                m.scale = (m.num_heads * m.dim_head) ** -0.5  # torchvision scales by feat_dim, not head dim
    return t

def mapped(t):
    out = {}
    ts = t.state_dict()
    for k, v in tv.state_dict().items():
        if k.startswith("classifier") or k.endswith("relative_position_index"):
            continue
        n = k.replace("stem.0.0.", "stem.conv1.").replace("stem.0.1.", "stem.norm1.")
        n = n.replace("stem.1.0.", "stem.conv2.")
        n = re.sub(r"^blocks\.(\d+)\.layers\.(\d+)\.layers\.", r"stages.\1.blocks.\2.", n)
        for a, b in [("MBconv.proj.1.", "conv.shortcut.expand."), ("MBconv.layers.pre_norm.", "conv.pre_norm."),
                     ("MBconv.layers.conv_a.0.", "conv.conv1_1x1."), ("MBconv.layers.conv_a.1.", "conv.norm1."),
                     ("MBconv.layers.conv_b.0.", "conv.conv2_kxk."), ("MBconv.layers.conv_b.1.", "conv.norm2."),
                     ("MBconv.layers.squeeze_excitation.", "conv.se."), ("MBconv.layers.conv_c.", "conv.conv3_1x1."),
                     ("window_attention.", "attn_block."), ("grid_attention.", "attn_grid."),
                     ("attn_layer.0.", "norm1."),
                     ("attn_layer.1.relative_position_bias_table", "attn.rel_pos.relative_position_bias_table"),
                     ("attn_layer.1.to_qkv.", "attn.qkv."), ("attn_layer.1.merge.", "attn.proj."),
                     ("mlp_layer.0.", "norm2."), ("mlp_layer.1.", "mlp.fc1."), ("mlp_layer.3.", "mlp.fc2.")]:
            n = n.replace(a, b)
        out[n] = v
    out["stem.conv1.bias"] = torch.zeros(64)
    return out

x = torch.randn(3, 3, 224, 224)
with torch.no_grad():
    ref = tv.stem(x)
    for b in tv.blocks:
        ref = b(ref)
for patch in (False, True):
    t = build(patch)
    state = mapped(t)
    missing, unexpected = t.load_state_dict(state, strict=False)
    missing = [m for m in missing if "relative_position_index" not in m]
    print("patched" if patch else "config only", "missing", missing[:4], "unexpected", unexpected[:4])
    with torch.no_grad():
        y = t.forward_features(x)
    print("  max |diff| of trunk features:", (y - ref).abs().max().item(), "feature scale", ref.abs().max().item())
