"""Configurations of the three hf_tformer variants over one shared base.

Every architectural choice is a plain string, number or bool so that `config.json` stays serializable and readable.
Invalid values raise `ValueError` at construction, naming the field, the value and what is allowed.
"""

from typing import Any, Optional

from transformers import PretrainedConfig

from .config_checks import GATED_ACTIVATIONS, block_tp_plan, check_config, check_layer_types, moe_tp_plan

class TformerConfig(PretrainedConfig):
    """Fields shared by the encoder, decoder and encoder-decoder.

    Args:
        vocab_size: number of token ids.
        hidden_size: width of the residual stream.
        num_hidden_layers: number of blocks (the encoder-decoder has `encoder_layers` / `decoder_layers`).
        num_attention_heads: query heads; `hidden_size` must be divisible by it.
        num_key_value_heads: key/value heads (None = `num_attention_heads`: MHA; 1: MQA; otherwise GQA).
        intermediate_size: hidden units of the feed-forward network.
        hidden_act: `relu` | `gelu` | `gelu_new` | `silu`, or the gated `swiglu` | `geglu` | `geglu_new` (gate
            activation silu / gelu / gelu_new; T5 v1.1's gated-gelu is `geglu_new`).
        max_position_embeddings: longest sequence (a hard limit for `learned` positions).
        position_embedding_type: `sinusoidal` (2017 paper) | `learned` | `rotary` | `relative` (T5: a learned bias
            per head and bucketed key - query distance, added to the self-attention scores of each stack).
        rotary_base: the base of the rotary frequencies (10000 in RoFormer / Llama).
        relative_attention_num_buckets / relative_attention_max_distance: T5's bucketing (32, 128).
        attention_scale: factor on q·k scores; None = 1/sqrt(head_dim). T5 uses 1.0 (folded into its weights).
        lm_head_input_scale: factor on the hidden states entering the LM head (T5 with tied embeddings: d**-0.5).
        norm_placement: `post` (2017 paper, BERT) | `pre` (GPT-2 and later; adds a final norm).
        norm_type: `layernorm` | `rmsnorm`.
        layer_norm_eps: epsilon of every norm.
        attention_bias / mlp_bias: bias on the attention / feed-forward projections.
        attention_out_bias: bias on the attention output projection; None = `attention_bias` (Qwen2: q/k/v biased,
            output not).
        qk_norm: RMSNorm over each head's query and key before rotary (Qwen3).
        partial_rotary_factor: the share of each head's dims that rotary rotates (GPT-NeoX / Pythia: 0.25); the
            rest pass unrotated.
        parallel_residual: x + Attn(Norm1(x)) + MLP(Norm2(x)) instead of the sequential residuals (GPT-NeoX);
            pre-norm only.
        sliding_window: local attention over the last `sliding_window` keys (the query's own included; an encoder
            attends |key - query| < sliding_window); None = full attention.
        layer_types: per layer `full_attention` | `sliding_attention` (Gemma-2 / Qwen2 style interleaving); None =
            every layer sliding when `sliding_window` is set (Mistral), full otherwise.
        lm_head_bias: bias on the language-modeling output projection.
        num_experts: experts of a sparse mixture-of-experts feed-forward (decoder; moe.py); 0 = dense everywhere.
        num_experts_per_tok: experts each token is routed to (top-k of the router's softmax).
        norm_topk_prob: renormalise the top-k probabilities to sum 1 (Mixtral: True; Qwen2-MoE's own setting).
        moe_intermediate_size: hidden units of each expert; None = `intermediate_size`.
        shared_expert_intermediate_size: hidden units of a shared expert every token passes through, scaled by a
            sigmoid gate (Qwen2-MoE); 0 = none.
        moe_layers: indices of the layers whose feed-forward is the MoE one, the rest dense; None = every layer.
        router_aux_loss_coef: weight of the load-balancing loss added to the LM loss when router logits are output.
        output_router_logits: return each MoE layer's router logits (and the load-balancing `aux_loss`).
        embedding_layernorm: a norm right after the embeddings (BERT, BART).
        type_vocab_size: token-type (segment) vocabulary; 0 disables token-type embeddings.
        scale_embeddings: multiply token embeddings by sqrt(hidden_size) (2017 paper).
        hidden_dropout / attention_dropout / activation_dropout / classifier_dropout: dropout probabilities.
        initializer_range: std of the normal initialisation.
    """

    def __init__(
        self,
        vocab_size: int = 32000,
        hidden_size: int = 512,
        num_hidden_layers: int = 6,
        num_attention_heads: int = 8,
        num_key_value_heads: Optional[int] = None,
        intermediate_size: int = 2048,
        hidden_act: str = "gelu",
        max_position_embeddings: int = 512,
        position_embedding_type: str = "learned",
        rotary_base: float = 10000.0,
        relative_attention_num_buckets: int = 32,
        relative_attention_max_distance: int = 128,
        attention_scale: Optional[float] = None,
        lm_head_input_scale: float = 1.0,
        norm_placement: str = "pre",
        norm_type: str = "layernorm",
        layer_norm_eps: float = 1e-5,
        attention_bias: bool = True,
        attention_out_bias: Optional[bool] = None,
        qk_norm: bool = False,
        partial_rotary_factor: float = 1.0,
        parallel_residual: bool = False,
        sliding_window: Optional[int] = None,
        layer_types: Optional[list[str]] = None,
        mlp_bias: bool = True,
        lm_head_bias: bool = False,
        num_experts: int = 0,
        num_experts_per_tok: int = 2,
        norm_topk_prob: bool = True,
        moe_intermediate_size: Optional[int] = None,
        shared_expert_intermediate_size: int = 0,
        moe_layers: Optional[list[int]] = None,
        router_aux_loss_coef: float = 0.001,
        output_router_logits: bool = False,
        embedding_layernorm: bool = False,
        type_vocab_size: int = 0,
        scale_embeddings: bool = False,
        hidden_dropout: float = 0.1,
        attention_dropout: float = 0.1,
        activation_dropout: float = 0.0,
        classifier_dropout: Optional[float] = None,
        initializer_range: float = 0.02,
        use_cache: bool = True,
        pad_token_id: Optional[int] = 0,
        bos_token_id: Optional[int] = None,
        eos_token_id: Optional[int] = None,
        tie_word_embeddings: bool = True,
        **kwargs: Any,
    ) -> None:
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_attention_heads if num_key_value_heads is None else num_key_value_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.position_embedding_type = position_embedding_type
        self.rotary_base = rotary_base
        self.relative_attention_num_buckets = relative_attention_num_buckets
        self.relative_attention_max_distance = relative_attention_max_distance
        self.attention_scale = attention_scale
        self.lm_head_input_scale = lm_head_input_scale
        self.norm_placement = norm_placement
        self.norm_type = norm_type
        self.layer_norm_eps = layer_norm_eps
        self.attention_bias = attention_bias
        self.attention_out_bias = attention_bias if attention_out_bias is None else attention_out_bias
        self.qk_norm = qk_norm
        self.partial_rotary_factor = partial_rotary_factor
        self.parallel_residual = parallel_residual
        self.sliding_window = sliding_window
        self.layer_types = None if layer_types is None else list(layer_types)
        self.mlp_bias = mlp_bias
        self.lm_head_bias = lm_head_bias
        self.num_experts = num_experts
        self.num_experts_per_tok = num_experts_per_tok
        self.norm_topk_prob = norm_topk_prob
        self.moe_intermediate_size = moe_intermediate_size
        self.shared_expert_intermediate_size = shared_expert_intermediate_size
        self.moe_layers = None if moe_layers is None else list(moe_layers)
        self.router_aux_loss_coef = router_aux_loss_coef
        self.output_router_logits = output_router_logits
        self.embedding_layernorm = embedding_layernorm
        self.type_vocab_size = type_vocab_size
        self.scale_embeddings = scale_embeddings
        self.hidden_dropout = hidden_dropout
        self.attention_dropout = attention_dropout
        self.activation_dropout = activation_dropout
        self.classifier_dropout = classifier_dropout
        self.initializer_range = initializer_range
        self.use_cache = use_cache
        check_layer_types(self.layer_types, num_hidden_layers, sliding_window)
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
        self.validate_tformer()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs: Any) -> "TformerConfig":
        """Refuses a config.json of another model type (transformers would only warn and build a wrong model)."""
        config_dict, _ = cls.get_config_dict(pretrained_model_name_or_path, **dict(kwargs))
        if cls.base_config_key and cls.base_config_key in config_dict:  # a tower's config inside a composite's (CLIP)
            config_dict = config_dict[cls.base_config_key]
        found = config_dict.get("model_type")
        if found is not None and found != cls.model_type:
            raise ValueError(
                f"{pretrained_model_name_or_path} holds a {found!r} config, not {cls.model_type!r}; load it with its "
                "own class (AutoConfig), or convert the checkpoint first."
            )
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs: Any):
        """transformers sets keyword overrides (`from_pretrained(path, use_cache="no")`) after __init__, unchecked:
        check the result again."""
        loaded = super().from_dict(config_dict, **kwargs)
        (loaded[0] if isinstance(loaded, tuple) else loaded).validate_tformer()
        return loaded

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def validate_tformer(self) -> None:
        """Raise `ValueError` naming the first invalid field."""
        check_config(self)
        plan = type(self).base_model_tp_plan
        if plan and not self.is_gated:  # the plan names only modules the stacks have (transformers 5 checks it)
            self.base_model_tp_plan = {key: style for key, style in plan.items() if not key.endswith(".mlp.gate_proj")}

    def _position_dim(self) -> int:
        return self.rotary_dim if self.position_embedding_type == "rotary" else self.hidden_size

    @property
    def rotary_dim(self) -> int:
        """How many of each head's dims rotary rotates (the first ones)."""
        return int(self.head_dim * self.partial_rotary_factor)

    def layer_type(self, layer_idx: int) -> str:
        """`full_attention` or `sliding_attention` for the self attention of layer `layer_idx`."""
        if self.layer_types is not None:
            return self.layer_types[layer_idx]
        return "sliding_attention" if self.sliding_window is not None else "full_attention"

    def is_moe_layer(self, layer_idx: int) -> bool:
        """Whether layer `layer_idx`'s feed-forward is the sparse mixture of experts (moe.py)."""
        return self.num_experts > 0 and (self.moe_layers is None or layer_idx in self.moe_layers)

    @property
    def moe_layer_indices(self) -> tuple[int, ...]:
        return tuple(index for index in range(self.num_hidden_layers) if self.is_moe_layer(index))

    @property
    def expert_intermediate_size(self) -> int:
        return self.intermediate_size if self.moe_intermediate_size is None else self.moe_intermediate_size

    def _layer_count_fields(self) -> tuple[str, ...]:
        return ("num_hidden_layers",)

    @property
    def is_gated(self) -> bool:
        return self.hidden_act in GATED_ACTIVATIONS


class TformerEncoderConfig(TformerConfig):
    """A bidirectional encoder (BERT-like defaults: post-norm, learned positions, token types, embedding norm)."""

    model_type = "hf_tformer_encoder"
    keys_to_ignore_at_inference = []
    base_model_tp_plan = {**block_tp_plan("encoder")}
    base_model_pp_plan = {
        "embed_tokens": (["input_ids"], ["inputs_embeds"]),
        "encoder.layers": (["hidden_states", "attention_mask"], ["hidden_states"]),
    }

    def __init__(
        self,
        norm_placement: str = "post",
        embedding_layernorm: bool = True,
        type_vocab_size: int = 2,
        layer_norm_eps: float = 1e-12,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("use_cache", False)
        super().__init__(
            norm_placement=norm_placement,
            embedding_layernorm=embedding_layernorm,
            type_vocab_size=type_vocab_size,
            layer_norm_eps=layer_norm_eps,
            **kwargs,
        )


class TformerDecoderConfig(TformerConfig):
    """A causal decoder (GPT-2-like defaults: pre-norm, learned positions, gelu_new, final norm)."""

    model_type = "hf_tformer_decoder"
    keys_to_ignore_at_inference = ["past_key_values"]
    base_model_tp_plan = {**block_tp_plan("decoder")}
    base_model_pp_plan = {
        "embed_tokens": (["input_ids"], ["inputs_embeds"]),
        "decoder.layers": (["hidden_states", "attention_mask"], ["hidden_states"]),
        "decoder.final_norm": (["hidden_states"], ["hidden_states"]),
    }

    def __init__(self, hidden_act: str = "gelu_new", **kwargs: Any) -> None:
        kwargs.setdefault("bos_token_id", 1)
        kwargs.setdefault("eos_token_id", 2)
        super().__init__(hidden_act=hidden_act, **kwargs)
        if self.num_experts:  # on the instance: a dense model's plan names no expert (unused rules are logged)
            shared = bool(self.shared_expert_intermediate_size)
            self.base_model_tp_plan = {**type(self).base_model_tp_plan, **moe_tp_plan("decoder", shared_expert=shared)}


class TformerEncoderDecoderConfig(TformerConfig):
    """An encoder-decoder (2017-paper defaults: post-norm, sinusoidal positions, relu, scaled embeddings).

    `encoder_layers` / `decoder_layers` set the two depths; `num_hidden_layers` reads the decoder's depth, which is
    what generate() sizes its caches by.
    """

    model_type = "hf_tformer_encoder_decoder"
    keys_to_ignore_at_inference = ["past_key_values"]
    attribute_map = {"num_hidden_layers": "decoder_layers"}
    base_model_tp_plan = {**block_tp_plan("encoder"), **block_tp_plan("decoder", cross_attention=True)}
    base_model_pp_plan = {
        "shared": (["input_ids"], ["inputs_embeds"]),
        "encoder.layers": (["hidden_states", "attention_mask"], ["hidden_states"]),
        "decoder.layers": (["hidden_states", "attention_mask"], ["hidden_states"]),
    }

    def __init__(
        self,
        encoder_layers: int = 6,
        decoder_layers: int = 6,
        hidden_act: str = "relu",
        position_embedding_type: str = "sinusoidal",
        norm_placement: str = "post",
        scale_embeddings: bool = True,
        decoder_start_token_id: Optional[int] = None,
        is_encoder_decoder: bool = True,
        **kwargs: Any,
    ) -> None:
        self.encoder_layers = encoder_layers
        self.decoder_layers = kwargs.pop("num_hidden_layers", decoder_layers)
        kwargs.setdefault("bos_token_id", 1)
        kwargs.setdefault("eos_token_id", 2)
        if decoder_start_token_id is None:
            decoder_start_token_id = kwargs["bos_token_id"]
        super().__init__(
            num_hidden_layers=self.decoder_layers,
            hidden_act=hidden_act,
            position_embedding_type=position_embedding_type,
            norm_placement=norm_placement,
            scale_embeddings=scale_embeddings,
            decoder_start_token_id=decoder_start_token_id,
            is_encoder_decoder=is_encoder_decoder,
            **kwargs,
        )

    def _layer_count_fields(self) -> tuple[str, ...]:
        return ("encoder_layers", "decoder_layers")
