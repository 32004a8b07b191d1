"""The image front end: pixels -> the token sequence the shared stack runs on.

The front-end seam: a front end turns a modality's raw input into (batch, tokens, hidden) *with positions already
added*, and the stack is built with `position_embedding_type="none"`, so its TformerEmbeddings only applies the
optional `embedding_layernorm` and dropout before the blocks. Here that is ViT's: a strided Conv2d embeds each
patch, [CLS] (and DeiT's distillation token) go first, and a learned table of (prefix + patches) positions is added,
bicubically resampled over the patch grid for other image sizes (as transformers' ViT does, `interpolate_pos_encoding`).

    pixel_values (B, C, H, W) --Conv2d(k=s=patch)--> (B, hidden, H/p, W/p) --flatten--> (B, H/p * W/p, hidden)
    [CLS] (+ distillation) ++ patches  +  positions (1, prefix + H/p * W/p, hidden)  -->  stack
"""

import torch
from torch import nn

from .masks import validating_inputs


def check_pixel_values(pixel_values, config, interpolate_pos_encoding: bool) -> None:
    """Raise ValueError / TypeError naming what is wrong with `pixel_values` and how to fix it."""
    if pixel_values is None:
        raise ValueError("pixel_values is required: pass images through the image processor (AutoImageProcessor).")
    if not isinstance(pixel_values, torch.Tensor):
        raise TypeError(f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}; "
                        "use the image processor with return_tensors='pt'.")
    if not validating_inputs():
        return
    if pixel_values.dim() != 4:
        raise ValueError(f"pixel_values has shape {tuple(pixel_values.shape)}; it must be (batch, channels, height, "
                         "width): add a batch dimension with pixel_values[None] for one image.")
    if not pixel_values.is_floating_point():
        raise ValueError(f"pixel_values has dtype {pixel_values.dtype}; it must be floating point (rescaled and "
                         "normalized): use the image processor, or pixel_values.float() / 255 and normalize.")
    channels, height, width = pixel_values.shape[1:]
    if channels != config.num_channels:
        raise ValueError(f"pixel_values has {channels} channels but num_channels={config.num_channels}; convert the "
                         f"images (e.g. image.convert('RGB') for 3) or use a model made for {channels} channels.")
    patch = config.patch_size
    if height % patch or width % patch:
        raise ValueError(f"image size {height}x{width} is not a multiple of patch_size={patch}; resize or crop to a "
                         f"multiple (the image processor resizes to {config.image_size}x{config.image_size}).")
    if not interpolate_pos_encoding and (height, width) != (config.image_size, config.image_size):
        raise ValueError(f"image size {height}x{width} differs from image_size={config.image_size}; resize to it, or "
                         "pass interpolate_pos_encoding=True to resample the learned positions.")


class TformerPatchEmbeddings(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.patch_size = config.patch_size
        self.grid = config.image_size // config.patch_size  # patches per side the position table was made for
        self.num_prefix_tokens = config.num_prefix_tokens
        self.projection = nn.Conv2d(config.num_channels, config.hidden_size, kernel_size=config.patch_size,
                                    stride=config.patch_size, bias=config.patch_embedding_bias)
        # Initialised by the model's _init_weights (normal, initializer_range), as transformers' ViT does.
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        if config.distillation_token:
            self.distillation_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.position_embeddings = nn.Parameter(
            torch.zeros(1, config.num_prefix_tokens + self.grid**2, config.hidden_size)
        )

    def learned_tokens(self) -> list[nn.Parameter]:
        """The parameters that are not in a Linear / Conv2d (the model's _init_weights initialises these)."""
        extra = [self.distillation_token] if hasattr(self, "distillation_token") else []
        return [self.cls_token, *extra, self.position_embeddings]

    def positions(self, rows: int, columns: int) -> torch.Tensor:
        """(1, prefix + rows * columns, hidden): the table, its patch part resampled bicubically to the grid."""
        # Traced graphs always resample, so an exported model takes any image size (transformers' ViT does the same).
        if (rows, columns) == (self.grid, self.grid) and not torch.jit.is_tracing():
            return self.position_embeddings
        prefix = self.position_embeddings[:, : self.num_prefix_tokens]
        patches = self.position_embeddings[:, self.num_prefix_tokens:]
        dim = patches.shape[-1]
        patches = patches.reshape(1, self.grid, self.grid, dim).permute(0, 3, 1, 2)  # (1, hidden, grid, grid)
        patches = nn.functional.interpolate(patches, size=(rows, columns), mode="bicubic", align_corners=False)
        patches = patches.permute(0, 2, 3, 1).reshape(1, rows * columns, dim)
        return torch.cat([prefix, patches], dim=1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(batch, channels, height, width), already checked -> (batch, prefix + patches, hidden)."""
        pixel_values = pixel_values.to(self.projection.weight.dtype)
        patches = self.projection(pixel_values)  # (batch, hidden, rows, columns)
        rows, columns = patches.shape[-2:]
        patches = patches.flatten(2).transpose(1, 2)  # (batch, rows * columns, hidden)
        batch = patches.shape[0]
        prefix = [self.cls_token.expand(batch, -1, -1)]
        if hasattr(self, "distillation_token"):
            prefix.append(self.distillation_token.expand(batch, -1, -1))
        tokens = torch.cat([*prefix, patches], dim=1)
        return tokens + self.positions(rows, columns)
