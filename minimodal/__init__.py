"""minimodal: vision-language models built from first principles in PyTorch.

One idea per module, in one flat package (open_clip's way rather than timm's subpackages):
a learner finds ``minimodal/vit.py`` where lesson 03 says it is, and imports run one
way, from the top of this map to the bottom, never back (``tests/test_layout.py``
checks it). The lesson that builds each module is in brackets.

Building blocks
    transformer     attention, multi-head and grouped-query attention, the block, the stack [02, 11]
    mlp             the feed-forward: MLP and LLaMA's SwiGLU [02, 11]
    norm            RMSNorm [11]
    rope            rotary position embeddings [11]
    kv_cache        keys and values kept across decoding steps, an argument of attention [11]
    lstm            the LSTM cell gate by gate, a padded multi-layer LSTM [08]
Towers
    vit             the Vision Transformer, patchify, pixel checks [03]
    text            CLIP's causal text encoder, pooling at end-of-text [04]
    bert            a post-LN BERT read out by mean pooling (all-MiniLM-L6-v2) [02]
    lm              a small LLaMA-style language model, left padding, positions [11]
Models
    clip            two towers in one embedding space, the learned temperature [05]
    zeroshot        classifiers written in captions, prompt ensembling [07]
    retrieval       Recall@K both ways [07]
    vqa             the CNN+LSTM VQA model, fusions, a frozen CLIP image encoder [08]
    vqa_data        a VQA split as tensors [08]
    lstm_decoder    Show, Attend and Tell: an LSTM captioner with attention [09]
    decoder         a Transformer caption decoder with a KV cache [09]
    caption         a patch encoder and a decoder, the captioning loss [09]
    vilt            ViLT: words and patches in one Transformer, modality-type embeddings, VQA by BCE on soft scores [10]
    blip            BLIP's retrieval heads: ITC's pooled vectors, ITM's cross-attention text encoder [10]
    generate        sampling (greedy, temperature, top-k, top-p), generation with a KV cache [11]
    llava           patch features projected and spliced into a language model; the chat labels [12]
    resampler       Flamingo's perceiver resampler: learned latents read any number of patches [13]
    qformer         BLIP-2's Q-Former, the queries' path: self-attention, cross-attention, feed-forward [13]
    flamingo        tanh-gated cross-attention into a frozen LM, the latest-image mask, interleaved input [13]
    owlvit          OWL-ViT: a box and a phrase score per patch, queries embedded by CLIP's text tower [14]
Conversion (strict key maps to other people's checkpoints; above the models they fill)
    convert         the table of names in every format; transformers' CLIPModel [03, 06]
    convert_openai  OpenAI's CLIP and open_clip files [03]
    convert_bert    BERT, for all-MiniLM-L6-v2 [02]
    convert_vilt    transformers' ViltForQuestionAnswering, both ways [10]
    convert_blip    transformers' BlipForImageTextRetrieval, both ways [10]
    convert_llama   transformers' LlamaForCausalLM, both ways [11]
    convert_llava   transformers' LlavaForConditionalGeneration, both ways [12]
    convert_flamingo  IDEFICS's resampler and gated layer, BLIP-2's Q-Former; the trained parts' checkpoint [13]
    convert_owlvit  transformers' OwlViTForObjectDetection, both ways [14]
Training and recipes
    train           the one training loop: AdamW, warmup and cosine, clipping, autocast, resume [06]
    vqa_train       training and judging a VQA model, its baselines [08]
    pretrained      the course's shapes CLIP: its recipe, export and loading [06]
    vilt_recipe     the course's ViLT: lesson 08's questions, one 16-pixel patch per grid cell, export [10]
    blip_recipe     the course's BLIP: ITC + ITM with hard negatives, batches of scenes and their twins [10]
    blip_eval       colour-swap, relation-swap and count-change probes; CLIP, ITM and CLIP + ITM re-ranking [10]
    lm_recipe       the course's shapes language model: corpus, tokenizer, training, export [11]
    lm_eval         its loss against bigram and uniform baselines; sampled captions judged [11]
    llava_recipe    the course's LLaVA: two stages on the shapes world, export [12]
    llava_eval      its answers per kind, hallucinations, captions, its image tokens as words [12]
    flamingo_recipe the course's Flamingo: interleaved few-shot episodes, only connector and gates learn [13]
    flamingo_eval   few-shot accuracy by number of examples and seed, on-task answers, gates shut [13]
    owlvit_recipe   the course's shapes detector: fine-tuned from the shapes CLIP on boxes with phrases [14]
    owlvit_eval     its detections, AP per kind of phrase, the held-out pair, CLIP's patch heat maps [14]
Entry points
    clip_api        ``minimodal.load``, ``minimodal.tokenize``: OpenAI's clip API on these models
    cli             ``python -m minimodal classify | search``
    tour            every lesson run headless, with its checks counted
    grading         the autograder and one suite per exercise
Beside them (imported from any level)
    bpe, tokenizer  byte-level BPE [01] and CLIP's exact tokenizer [01]
    lm_tokenizer    BPE with special tokens (image, chat turns), the chat template [11]
    vocab           word-level vocabularies for questions and captions [08, 09]
    loss            InfoNCE, also across processes [05]
    distributed     torchrun's processes for the training loop: ranks, batch slices, averages [06]
    decoding        greedy and beam search over any decoder's steps [09]
    similarity      cosine similarity and top-k [00]
    bleu            BLEU from n-gram counts [09]
    boxes           box formats, IoU and generalized IoU [14]
    matching        the optimal one-to-one assignment (Hungarian) and DETR's matching cost [14]
    detection_loss  DETR's set loss: match, then focal, L1 and GIoU terms on the pairs [14]
    blip_loss       BLIP's hard negatives drawn from ITC similarities, the joint ITC + ITM loss [10]
    average_precision  AP from a ranked list, COCO's AP@0.5 and AP@[.5:.95] [14]
    hub             the caches checkpoints live in (OpenAI's, Hugging Face's); downloads on request
    data            the shapes world and its text, boxes with phrases, easy-vqa, photos, CLIP's preprocessing [00, 03, 11, 14]
    device, check   one device choice and seeding; validation helpers that name what diverged
    source          a lesson shows the package's own code with show_source
    figures         the lessons' one figure style, row-normalized confusion tables, block diagrams

Init policy, one for the course: every ``nn.Linear``, ``nn.Conv2d``, ``nn.LayerNorm`` and
``nn.Embedding`` keeps PyTorch's default initialisation, and so does the LSTM
(U(-1/sqrt(H), 1/sqrt(H)), written out in ``lstm``), except where the model being
reproduced does otherwise and the module says so: the ViT's class and positional
embeddings ~ N(0, 1/width) and the text tower's embeddings ~ N(0, 0.02^2) / N(0, 0.01^2),
as in OpenAI's model.py; CLIP's temperature at 1/0.07; the caption decoder's positions
~ N(0, 0.02^2), as GPT-2's; the VQA question encoder's forget-gate bias at 1. A
checkpoint loaded from elsewhere overwrites all of it.
"""

__version__ = "0.1.0"

# OpenAI's clip API at the top level, imported on first use so that ``import minimodal.vit``
# (and grading the warm-up) stays light.
_API = ("load", "tokenize", "available_models")


def __getattr__(name: str):
    if name in _API:
        from minimodal import clip_api
        return getattr(clip_api, name)
    raise AttributeError(f"module 'minimodal' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
