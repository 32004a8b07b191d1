"""The audio front end: log-mel frames -> the token sequence the shared stack runs on (Whisper's encoder input).

The same seam as vision.py: the front end returns (batch, tokens, hidden) with positions already added, and the
encoder stack is built with `position_embedding_type="none"`. Here two Conv1d layers with GELU (the second with
stride 2, halving the frames) and Whisper's position table:

    input_features (B, mel, frames) --conv1(k3)+gelu--> (B, hidden, frames) --conv2(k3, s2)+gelu--> (B, hidden, T)
    --transpose--> (B, T, hidden)  +  position_embeddings[:T] (T, hidden)  -->  stack        T = ceil(frames / 2)

The table is a weight (`...front_end.position_embeddings`), not recomputed in forward: a checkpoint stores its own
(Whisper's are sinusoids rounded to the checkpoint's dtype, fp16 for most; recomputing them in fp32 is a different
function). Only where none is stored (a model built from a config, a checkpoint saved before the table was stored)
the model's _init_weights fills in the sinusoids.
"""

import math

import torch
from torch import nn

from .input_checks import check_not_empty
from .masks import validating_inputs
from .pretrained import init_copy


def audio_sinusoids(length: int, channels: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """(length, channels): sin in the first half, cos in the second, with Whisper's timescales
    exp(-i * log(10000) / (channels / 2 - 1)) — the values of transformers' WhisperEncoder.embed_positions.
    Computed in float32 whatever the default dtype (transformers 4.57 sets it to the load dtype while initialising)."""
    increment = math.log(10000.0) / (channels // 2 - 1)
    inverse_timescales = torch.exp(-increment * torch.arange(channels // 2, dtype=torch.float32, device=device))
    angles = torch.arange(length, dtype=torch.float32, device=device).view(-1, 1) * inverse_timescales.view(1, -1)
    return torch.cat([angles.sin(), angles.cos()], dim=1).to(dtype)


def check_input_features(input_features, config) -> None:
    """Raise ValueError / TypeError naming what is wrong with `input_features` and how to fix it."""
    if input_features is None:
        raise ValueError("input_features is required: pass audio through the feature extractor "
                         "(AutoFeatureExtractor / WhisperFeatureExtractor) with return_tensors='pt'.")
    if not isinstance(input_features, torch.Tensor):
        raise TypeError(f"input_features must be a torch.Tensor, got {type(input_features).__name__}; use the "
                        "feature extractor with return_tensors='pt'.")
    if not validating_inputs():
        return
    if input_features.dim() != 3:
        raise ValueError(f"input_features has shape {tuple(input_features.shape)}; it must be (batch, num_mel_bins, "
                         "frames): add a batch dimension with input_features[None] for one clip.")
    check_not_empty(input_features, "input_features", "(batch, num_mel_bins, frames)")
    if not input_features.is_floating_point():
        raise ValueError(f"input_features has dtype {input_features.dtype}; log-mel features are floating point: "
                         "use the feature extractor's output.")
    mel_bins, frames = input_features.shape[1:]
    if mel_bins != config.num_mel_bins:
        raise ValueError(f"input_features has {mel_bins} mel bins but num_mel_bins={config.num_mel_bins}; make the "
                         f"features with feature_size={config.num_mel_bins} (the checkpoint's preprocessor_config.json)"
                         " or check that the tensor is (batch, mel, frames), not (batch, frames, mel).")
    limit = 2 * config.max_source_positions
    if frames > limit:
        raise ValueError(f"input_features has {frames} frames but the encoder has max_source_positions="
                         f"{config.max_source_positions} positions, i.e. at most {limit} frames; cut the audio into "
                         "windows (the pipeline's chunk_length_s, or generate() on the full features for long-form).")


class TformerAudioFrontEnd(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(config.num_mel_bins, config.hidden_size, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(config.hidden_size, config.hidden_size, kernel_size=3, stride=2, padding=1)
        # Frozen, as Whisper's; filled by the checkpoint or, where it stores none, by the model's _init_weights.
        self.position_embeddings = nn.Parameter(torch.empty(config.max_source_positions, config.hidden_size),
                                                requires_grad=False)

    def reset_positions(self) -> None:
        """Fill the table with Whisper's sinusoids (transformers 5 leaves a table loaded from a checkpoint alone)."""
        init_copy(self.position_embeddings, audio_sinusoids(*self.position_embeddings.shape))

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        """(batch, mel, frames), already checked -> (batch, ceil(frames / 2), hidden)."""
        hidden_states = nn.functional.gelu(self.conv1(input_features.to(self.conv1.weight.dtype)))
        hidden_states = nn.functional.gelu(self.conv2(hidden_states))  # (batch, hidden, T)
        hidden_states = hidden_states.transpose(1, 2)  # (batch, T, hidden)
        positions = self.position_embeddings[: hidden_states.shape[1]]  # (T, hidden); check_input_features bounds T
        return hidden_states + positions.to(hidden_states.dtype)
