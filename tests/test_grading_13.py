"""The graded checks of exercises/13_flamingo.ipynb can fail: classic mistakes lose their points."""

from grading_cases import SuiteCases, define, failed_checks
from minimodal.grading.suites import flamingo_13

IMPORTS = "import math\nimport torch\nimport torch.nn.functional as F\n"
# Right answers written unlike minimodal's: attention and the norms spelled out from the modules'
# weights, the mask built token by token.
RIGHT = IMPORTS + '''
def layer_norm(norm, x):
    return F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias, norm.eps)

def rms_norm(norm, x):
    return norm.weight * x / torch.sqrt((x * x).mean(-1, keepdim=True) + norm.eps)

def heads_attention(attn, queries, context, mask=None):
    def heads(t):
        return t.unflatten(-1, (attn.heads, -1)).transpose(1, 2)
    q, k, v = heads(attn.q_proj(queries)), heads(attn.k_proj(context)), heads(attn.v_proj(context))
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, -math.inf)
    return attn.out_proj((scores.softmax(-1) @ v).transpose(1, 2).flatten(2))

def perceiver_attention(attention, features, latents):
    asking = layer_norm(attention.latents_norm, latents)
    keys = torch.cat([layer_norm(attention.context_norm, features), asking], dim=1)
    return heads_attention(attention.attn, asking, keys)

def resample(resampler, features):
    patches = features.reshape(features.shape[0], -1, features.shape[-1])
    latents = torch.stack([resampler.latents] * len(patches))
    for layer in resampler.layers:
        latents = latents + perceiver_attention(layer.attention, patches, latents)
        hidden = layer.mlp.fc1(layer_norm(layer.norm, latents)).relu()
        latents = latents + layer.mlp.fc2(hidden)
    return layer_norm(resampler.norm, latents)

def gated_residual(x, update, alpha):
    return torch.addcmul(x, torch.tanh(alpha), update)

def gated_block(block, x, visual, mask, sees_image):
    read = heads_attention(block.cross_attn, rms_norm(block.attn_norm, x), visual, mask)
    x = gated_residual(x, torch.where(sees_image[..., None], read, torch.zeros_like(read)), block.attn_gate)
    h = rms_norm(block.mlp_norm, x)
    mlp = block.mlp
    return gated_residual(x, mlp.down_proj(F.silu(mlp.gate_proj(h)) * mlp.up_proj(h)), block.mlp_gate)

def image_mask(ids, image_id, images, tokens_per_image):
    mask = torch.zeros(ids.shape[0], 1, ids.shape[1], images * tokens_per_image, dtype=torch.bool)
    for row in range(ids.shape[0]):
        latest = -1
        for t in range(ids.shape[1]):
            latest += int(ids[row, t] == image_id)
            if latest >= 0:
                mask[row, 0, t, latest * tokens_per_image:(latest + 1) * tokens_per_image] = True
    return mask
'''

PERCEIVER = {"perceiver attention: the latents read [patches; latents]"}
RESAMPLE, FRAMES = "resample: latents per image, two residuals per layer, a final norm", \
    "resample reads a video's frames together"
GATE, CLOSED = "gated_residual: x + tanh(alpha)·update", "gated_residual at alpha = 0 gives back x and still learns"
BLOCK, BEFORE = "gated_block: gated cross-attention, then the gated feed-forward", \
    "gated_block: no cross-attention before the first image"
MASK, EMPTY = "image_mask: each token reads its latest image", "image_mask: nothing to read before the first image"

PERCEIVER_CODE = IMPORTS + '''
def perceiver_attention(attention, features, latents):
    asking = {asking}
    return {out}attention.attn(asking, torch.cat([{patches}, {latents}], dim=1))
'''


def perceiver_code(asking: str = "attention.latents_norm(latents)", out: str = "",
                   patches: str = "attention.context_norm(features)", latents: str = "asking") -> str:
    return PERCEIVER_CODE.format(asking=asking, out=out, patches=patches, latents=latents)


# A resampler that carries its own attention, so that a wrong one is handed in alone.
RESAMPLE_CODE = IMPORTS + '''
def resample(resampler, features):
    def attend(attention, patches, latents):
        asking = attention.latents_norm(latents)
        return attention.attn(asking, torch.cat([attention.context_norm(patches), asking], dim=1))
    patches = {patches}
    latents = resampler.latents.expand(len(patches), -1, -1)
    for layer in resampler.layers:
        latents = {residual}attend(layer.attention, patches, latents)
        latents = {residual}layer.mlp({mlp_in})
    return {final}
'''


def resample_code(patches: str = "features.flatten(1, -2)", residual: str = "latents + ",
                  mlp_in: str = "layer.norm(latents)", final: str = "resampler.norm(latents)") -> str:
    return RESAMPLE_CODE.format(patches=patches, residual=residual, mlp_in=mlp_in, final=final)


GATE_CODE = IMPORTS + '''
def gated_residual(x, update, alpha):
    return {formula}
'''

# A block that gates by itself, so that a wrong one is handed in alone.
BLOCK_CODE = IMPORTS + '''
def gated_block(block, x, visual, mask, sees_image):
    safe = {safe}
    read = block.cross_attn(block.attn_norm(x), visual, safe){zero}
    h = x + block.attn_gate.{squash}() * read
    return h + block.mlp_gate.{squash}() * block.mlp(block.mlp_norm({mlp_in}))
'''


def block_code(safe: str = "mask | ~sees_image[:, None, :, None]", zero: str = " * sees_image[..., None]",
               squash: str = "tanh", mlp_in: str = "h") -> str:
    return BLOCK_CODE.format(safe=safe, zero=zero, squash=squash, mlp_in=mlp_in)


MASK_CODE = IMPORTS + '''
def image_mask(ids, image_id, images, tokens_per_image):
    latest = {latest}
    owner = torch.arange(images * tokens_per_image) {owner}
    return (owner {compare} latest[..., None]){heads}
'''


def mask_code(latest: str = "(ids == image_id).long().cumsum(1) - 1", owner: str = "// tokens_per_image",
              compare: str = "==", heads: str = "[:, None]") -> str:
    return MASK_CODE.format(latest=latest, owner=owner, compare=compare, heads=heads)


STRICTLY_BEFORE = "torch.cat([torch.zeros_like(ids[:, :1]), (ids == image_id).long().cumsum(1)[:, :-1]], 1) - 1"

# mistake: (the learner's function, the checks it must fail and only those, a phrase its message says)
WRONG = {
    "latents that do not attend to themselves": (perceiver_code().replace(
        "torch.cat([attention.context_norm(features), asking], dim=1)", "attention.context_norm(features)"),
        PERCEIVER, "not to the patches only"),
    "the latents' LayerNorm forgotten": (perceiver_code(asking="latents"), PERCEIVER, "their own LayerNorm"),
    "the patches' LayerNorm forgotten": (perceiver_code(patches="features"), PERCEIVER, "normalize the patches"),
    "raw latents join the keys": (perceiver_code(latents="latents"), PERCEIVER, "are the normalized ones"),
    "the residual added inside": (perceiver_code(out="latents + "), PERCEIVER, "return the update alone"),
    "the resampler's final norm forgotten": (resample_code(final="latents"), {RESAMPLE, FRAMES}, "final LayerNorm"),
    "the feed-forward without its norm": (resample_code(mlp_in="latents"), {RESAMPLE, FRAMES}, "own LayerNorm"),
    "the latents replaced, not added to": (resample_code(residual=""), {RESAMPLE, FRAMES}, "two residuals"),
    "frames left unflattened": (resample_code(patches="features"), {FRAMES}, "flatten every axis"),
    "the gate without tanh": (GATE_CODE.format(formula="x + alpha * update"), {GATE}, "not alpha itself"),
    "the gate outside the residual": (GATE_CODE.format(formula="torch.tanh(alpha) * (x + update)"),
                                      {GATE, CLOSED}, "x passes untouched"),
    "a sigmoid gate": (GATE_CODE.format(formula="x + torch.sigmoid(alpha) * update"), {GATE, CLOSED}, "sigmoid(0)"),
    "a detached gate": (GATE_CODE.format(formula="x + torch.tanh(alpha.detach()) * update"), {CLOSED},
                        "no gradient reached alpha"),
    "the block's gates without tanh": (block_code(squash="clone"), {BLOCK, BEFORE}, "not by the gate itself"),
    "cross-attention kept before the first image": (block_code(zero=""), {BEFORE}, "zero its cross-attention"),
    "empty rows left to a softmax written by hand": (IMPORTS + '''
def gated_block(block, x, visual, mask, sees_image):
    attn = block.cross_attn
    q = attn.split_heads(attn.q_proj(block.attn_norm(x)))
    k, v = attn.keys_values(visual)
    scores = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).masked_fill(~mask, -math.inf)
    read = attn.out_proj(attn.merge_heads(scores.softmax(-1) @ v)) * sees_image[..., None]
    h = x + block.attn_gate.tanh() * read
    return h + block.mlp_gate.tanh() * block.mlp(block.mlp_norm(h))
''', {BEFORE}, "softmax over nothing is nan"),
    "the feed-forward reads x": (block_code(mlp_in="x"), {BLOCK, BEFORE}, "after the gated cross-attention"),
    "the mask not passed": (block_code(safe="None", zero=" * sees_image[..., None]"), {BLOCK, BEFORE},
                            "pass the mask"),
    "every earlier image read": (mask_code(compare="<="), {MASK}, "not every image up to it"),
    "the marker blind to its own image": (mask_code(latest=STRICTLY_BEFORE), {MASK, EMPTY}, "not strictly before"),
    "the first image read before it comes": (mask_code(latest="((ids == image_id).long().cumsum(1) - 1).clamp(min=0)"),
                                             {EMPTY}, "not the first image"),
    "visual tokens dealt out in turn": (mask_code(owner="% images"), {MASK, EMPTY}, "sit together"),
    "no axis for the heads": (mask_code(heads=""), {MASK, EMPTY}, "the heads share"),
}


class TestFlamingoSuite(SuiteCases):
    suite = flamingo_13
    right = RIGHT
    wrong = WRONG
    # one mistake per function: the grader must take their checks' points and leave the others
    graded = ("latents that do not attend to themselves", "the feed-forward without its norm",
              "the gate outside the residual", "cross-attention kept before the first image",
              "every earlier image read")


def test_the_right_version_of_each_wrong_one_passes():
    """The templates the mistakes are made from are right once the mistake is taken out."""
    for source, function in [(perceiver_code(), "perceiver_attention"), (resample_code(), "resample"),
                             (GATE_CODE.format(formula="x + torch.tanh(alpha) * update"), "gated_residual"),
                             (block_code(), "gated_block"), (mask_code(), "image_mask")]:
        assert failed_checks(flamingo_13.CHECKS, function, define(source, function)) == {}, function
