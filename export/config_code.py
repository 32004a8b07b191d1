"""Each export's config code is imported as its own module, named by its content, also when optimum loads it.

An export folder holds our config code (configuration_tformer.py + config_checks.py) and config.json's auto_map
points at it. optimum-onnx 0.1.0 loads a local folder's config with `AutoConfig.from_pretrained(
os.path.join(model_id, ""))` (optimum/modeling_base.py, OptimizedModel.from_pretrained): a trailing "/".
transformers names the module of a local folder's remote code after the folder's basename
(dynamic_module_utils.get_cached_module_file; no content hash for local folders), which is then empty: it logs
"The module name (originally ) is not a valid Python identifier" and imports every export's config as
`transformers_modules.configuration_tformer`, re-executed in place per load while the modules it imports
(config_checks) stay those of the first load. Dropping the slash is not enough: `runs/a/onnx` and `runs/b/onnx`
share a basename too. So `register()` points optimum's config loading at `load_config`, which imports our
export's code under `transformers_modules.hf_tformer_<sha256 of the .py files>`: different code never shares a
module, identical code does.
"""

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

CODE_MODULE_PREFIX = "hf_tformer_"


def code_digest(folder: Path) -> str:
    """sha256 (16 hex digits) over the names and bytes of the folder's top-level .py files."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _our_remote_config(folder: Path, model_types: tuple[str, ...]) -> str | None:
    """auto_map["AutoConfig"] of an export of one of `model_types` whose code is in the folder itself, else None."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        return None
    config = json.loads(config_path.read_text())
    reference = config.get("auto_map", {}).get("AutoConfig")
    if config.get("model_type") not in model_types or not isinstance(reference, str) or "--" in reference:
        return None
    return reference


def load_config(name_or_path: Any, model_types: tuple[str, ...], **kwargs: Any):
    """AutoConfig.from_pretrained, except that a local folder of ours (remote code trusted) gets its code imported
    under a content-named module, and any other local folder loses the trailing separator (module = its basename)."""
    from transformers import AutoConfig
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    is_folder = isinstance(name_or_path, (str, os.PathLike)) and os.path.isdir(name_or_path)
    if not is_folder:
        return AutoConfig.from_pretrained(name_or_path, **kwargs)
    folder = Path(os.path.normpath(name_or_path))
    reference = None if kwargs.get("subfolder") else _our_remote_config(folder, model_types)
    if reference is None or not kwargs.get("trust_remote_code"):
        return AutoConfig.from_pretrained(str(folder), **kwargs)
    kwargs.pop("trust_remote_code")
    kwargs.pop("subfolder", None)
    with tempfile.TemporaryDirectory() as scratch:  # transformers copies the code into its module cache
        code = Path(scratch) / f"{CODE_MODULE_PREFIX}{code_digest(folder)}"
        code.mkdir()
        for path in folder.glob("*.py"):
            shutil.copy(path, code / path.name)
        config_class = get_class_from_dynamic_module(reference, str(code))
    config_class.register_for_auto_class()  # as AutoConfig does: saving the config writes auto_map + the code
    return config_class.from_pretrained(str(folder), **kwargs)


def route_optimum_config_loading(model_types: tuple[str, ...]) -> None:
    """Make optimum's ORTModel*.from_pretrained load configs through `load_config` (idempotent)."""
    import optimum.modeling_base as modeling_base
    from transformers import AutoConfig

    if getattr(modeling_base.AutoConfig, "_hf_tformer_routed", False):
        return

    class ContentNamedAutoConfig(AutoConfig):
        _hf_tformer_routed = True

        @classmethod
        def from_pretrained(cls, pretrained_model_name_or_path: Any, **kwargs: Any):
            return load_config(pretrained_model_name_or_path, model_types, **kwargs)

    modeling_base.AutoConfig = ContentNamedAutoConfig
