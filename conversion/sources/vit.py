"""ViT and DeiT -> image encoder (pre-LN, learned positions over the patch grid, [CLS] pooling).

DeiT is ViT with a distillation token after [CLS]; its ...WithTeacher classifier averages a [CLS] head and a
distillation head, which the converted classifier does too (`distillation_head`).
"""

import hf_tformer as ht

from ..keymap import Rule, rule
from .base import I, P, Source, activation, plain_activation

_WITH_TEACHER = "DeiTForImageClassificationWithTeacher"
_LABEL_FIELDS = ("initializer_range", "problem_type", "id2label", "label2id")


def _square(config: dict, name: str) -> int:
    value = config.get(name)
    if isinstance(value, (list, tuple)) and len(value) == 2 and value[0] == value[1]:
        value = value[0]
    if not isinstance(value, int):
        raise ValueError(f"{name}={value!r} is not supported; only square sizes (one int) convert.")
    return value


def _vision_config(config: dict) -> ht.TformerViTConfig:
    family = config.get("model_type", "vit")
    if not config.get("qkv_bias", True):
        raise ValueError("qkv_bias=False is not supported: hf_tformer's attention_bias covers q, k, v and the "
                         "output projection together, and ViT's output projection always has a bias.")
    if config.get("pooler_act", "tanh") != "tanh":
        raise ValueError(f"pooler_act={config['pooler_act']!r} is not supported; the pooler is dense + tanh.")
    if config.get("pooler_output_size") not in (None, config["hidden_size"]):
        raise ValueError(f"pooler_output_size={config['pooler_output_size']} is not supported; the pooler keeps "
                         f"hidden_size={config['hidden_size']}.")
    architecture = (config.get("architectures") or [None])[0]
    fields = {name: config[name] for name in _LABEL_FIELDS if config.get(name) is not None}
    if "id2label" in fields:
        fields["id2label"] = {int(k): v for k, v in fields["id2label"].items()}
    return ht.TformerViTConfig(
        **fields,
        image_size=_square(config, "image_size"), patch_size=_square(config, "patch_size"),
        num_channels=config.get("num_channels", 3), hidden_size=config["hidden_size"],
        num_hidden_layers=config["num_hidden_layers"], num_attention_heads=config["num_attention_heads"],
        intermediate_size=config["intermediate_size"], hidden_act=activation(config.get("hidden_act", "gelu")),
        layer_norm_eps=config.get("layer_norm_eps", 1e-12), hidden_dropout=config.get("hidden_dropout_prob", 0.0),
        attention_dropout=config.get("attention_probs_dropout_prob", 0.0),
        distillation_token=family == "deit", distillation_head=architecture == _WITH_TEACHER,
    )


def _native(family: str):
    def native(config: ht.TformerConfig) -> dict:
        if not isinstance(config, ht.TformerViTConfig):
            raise ValueError(f"a {config.model_type} checkpoint is not an image encoder; {family} takes hf_tformer_vit.")
        if config.distillation_token != (family == "deit"):
            raise ValueError(f"distillation_token={config.distillation_token}: {family} "
                             f"{'always has' if family == 'deit' else 'has no'} distillation token.")
        if config.norm_placement != "pre" or config.norm_type != "layernorm" or not config.attention_bias or \
                not config.mlp_bias or config.embedding_layernorm or config.attention_scale is not None or \
                config.num_key_value_heads != config.num_attention_heads:
            raise ValueError(f"{family} is a pre-LayerNorm MHA encoder with biases and no embedding norm; this "
                             "checkpoint's norm_placement / norm_type / biases / embedding_layernorm / "
                             "attention_scale / num_key_value_heads differ.")
        return dict(
            {name: getattr(config, name) for name in _LABEL_FIELDS}, hidden_size=config.hidden_size,
            num_hidden_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
            intermediate_size=config.intermediate_size, hidden_act=plain_activation(config, family),
            layer_norm_eps=config.layer_norm_eps, hidden_dropout_prob=config.hidden_dropout,
            attention_probs_dropout_prob=config.attention_dropout, image_size=config.image_size,
            patch_size=config.patch_size, encoder_stride=config.patch_size, num_channels=config.num_channels,
        )

    return native


def _vision_rules(prefix: str):
    # Checkpoints (and transformers 4.57's modules) name ViT's layers `encoder.layer.{i}.attention.attention.query`
    # ...; transformers 5 renamed its modules (`layers.{i}.attention.q_proj`, `mlp.fc1`) and writes the old names
    # on save. Both are accepted: the way back (reverse.py) walks the native model's own state dict.
    def rules(config: dict, target: type) -> list[Rule]:
        b, ours = rf"(?:{prefix}\.)?", "model.encoder.layers.{i}."
        layer = rf"(?:{prefix}\.)?(?:encoder\.layer|layers)\.{I}\."
        classifier = "cls_classifier" if (config.get("architectures") or [None])[0] == _WITH_TEACHER else "classifier"
        return [
            rule(rf"{b}embeddings\.(?P<n>cls_token|distillation_token|position_embeddings)", "model.embeddings.{n}"),
            rule(rf"{b}embeddings\.patch_embeddings\.projection\.{P}", "model.embeddings.projection.{p}"),
            rule(rf"{layer}attention\.(?:attention\.query|q_proj)\.{P}", ours + "self_attn.q_proj.{p}"),
            rule(rf"{layer}attention\.(?:attention\.key|k_proj)\.{P}", ours + "self_attn.k_proj.{p}"),
            rule(rf"{layer}attention\.(?:attention\.value|v_proj)\.{P}", ours + "self_attn.v_proj.{p}"),
            rule(rf"{layer}attention\.(?:output\.dense|o_proj)\.{P}", ours + "self_attn.o_proj.{p}"),
            rule(rf"{layer}layernorm_before\.{P}", ours + "self_attn_norm.{p}"),
            rule(rf"{layer}(?:intermediate\.dense|mlp\.fc1)\.{P}", ours + "mlp.up_proj.{p}"),
            rule(rf"{layer}(?:output\.dense|mlp\.fc2)\.{P}", ours + "mlp.down_proj.{p}"),
            rule(rf"{layer}layernorm_after\.{P}", ours + "mlp_norm.{p}"),
            rule(rf"{b}layernorm\.{P}", "model.encoder.final_norm.{p}"),
            rule(rf"{b}pooler\.dense\.{P}", "model.pooler.dense.{p}"),
            rule(rf"{classifier}\.{P}", "classifier.{p}"),
            rule(rf"distillation_classifier\.{P}", "distillation_classifier.{p}"),
        ]

    return rules


VIT = Source(
    model_types=("vit",),
    classes={
        "ViTModel": ("ViTModel", ht.TformerViTModel),
        "ViTForImageClassification": ("ViTForImageClassification", ht.TformerViTForImageClassification),
    },
    translate_config=_vision_config,
    native_config=_native("vit"),
    rules=_vision_rules("vit"),
)

DEIT = Source(
    model_types=("deit",),
    classes={
        "DeiTModel": ("DeiTModel", ht.TformerViTModel),
        "DeiTForImageClassification": ("DeiTForImageClassification", ht.TformerViTForImageClassification),
        _WITH_TEACHER: (_WITH_TEACHER, ht.TformerViTForImageClassification),
    },
    translate_config=_vision_config,
    native_config=_native("deit"),
    rules=_vision_rules("deit"),
    notes="DeiT's distillation token is kept (a second prefix token). A converted ...WithTeacher classifier returns "
          "the mean of its two heads as `logits` (not cls_logits / distillation_logits separately) and, unlike "
          "DeiT's, computes a loss on that mean when given labels.",
)
