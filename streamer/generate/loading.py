"""Loading a Stable Diffusion 1.x checkpoint: where it comes from, where it runs, in what type.

Follows the Hugging Face conventions users know: ``--model`` takes a hub id (downloaded once,
with progress bars, into the shared cache), a local diffusers folder, or a single original-layout
``.safetensors``/``.ckpt`` file; ``builtin`` is a diffusers folder shipped inside the package,
loaded like any local folder, never from the network. Only the four parts a frame needs are
loaded (UNet, VAE, text encoder, tokenizer) plus the scheduler config, never the safety checker.
Whatever goes wrong while finding the weights ends in one ``UserError`` that says what was looked
for and how to fix it, instead of a stack of hub exceptions.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Mapping
from importlib import metadata, resources
from pathlib import Path
from typing import Any, TypeVar

import torch

from streamer.errors import UserError
from streamer.generate.compute_type import (
    ComputeType,
    cast,
    choose_cpu_dtype,
    cpu_facts,
    unet_call_timer,
)
from streamer.generate.config import (
    AUTO_MODEL,
    BUILTIN_MODEL,
    DEFAULT_MODEL,
    GeneratorConfig,
    download_command,
)

T = TypeVar("T")

#: The oldest releases the loader works with (the floors in pyproject.toml, which a test keeps
#: equal to these): transformers 4.56 added the ``dtype=`` argument of ``from_pretrained`` (older
#: ones take it for a config field and load float32 weights, which the UNet then meets in
#: another type); huggingface_hub 1.1 has the ``hf cache verify`` and ``hf cache rm`` commands
#: our errors tell users to run (``hf download`` and ``hf auth login`` came in 0.34).
MINIMUM_VERSIONS = {"transformers": "4.56", "huggingface_hub": "1.1"}


def check_library_versions(installed: Callable[[str], str] = metadata.version) -> None:
    """Raise a UserError naming every library older than ``MINIMUM_VERSIONS`` (an environment
    made by hand, or pinned for another project), instead of a TypeError deep in a load."""
    from packaging.version import Version

    old = {
        name: installed(name)
        for name, floor in MINIMUM_VERSIONS.items()
        if Version(installed(name)) < Version(floor)
    }
    if old:
        found = ", ".join(f"{name} {version}" for name, version in old.items())
        wanted = " ".join(f"'{name}>={MINIMUM_VERSIONS[name]}'" for name in old)
        raise UserError(
            f"streamer needs newer libraries than this environment has ({found}).\nTo fix it:\n"
            f"  - upgrade them: `pip install --upgrade {wanted}`\n"
            "  - or reinstall streamer into a fresh virtual environment (`./install.sh`)"
        )


check_library_versions()

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")

#: The files of the built-in model's folder, all of which must be there to load it.
BUILTIN_MODEL_FILES = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
)

#: Default compute type per accelerator. MPS: float32, because float16 has given NaN (black)
#: images on some PyTorch/macOS versions. CUDA: float16, SD 1.x's release type. A CPU's follows
#: the machine, decided at load (compute_type.py): bf16 where native and faster, else fp32.
DEFAULT_DTYPES = {"cuda": torch.float16, "mps": torch.float32}

_DTYPE_NAMES = {
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp32": torch.float32,
    "float32": torch.float32,
    "float": torch.float32,
}


@dataclasses.dataclass
class StableDiffusionModel:
    """The parts of a Stable Diffusion 1.x checkpoint that make frames, on their device."""

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    noise_schedule: dict[str, Any]
    device: torch.device
    dtype: torch.dtype
    source: str
    #: Why it computes in ``dtype``, for the start-up line (``compute_announcement``).
    dtype_reason: str = ""
    #: The model folder's light decoder (streamer.generate.light_decoder), None where it has none.
    light_decoder: Any = None

    def compute_announcement(self) -> str:
        return ComputeType(self.dtype, self.dtype_reason or "chosen by the caller").announcement()


def select_device(requested: str | None = None) -> torch.device:
    """The requested device, or the best available: cuda, then mps, then cpu."""
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError as error:
            raise UserError(
                f"unknown device {requested!r}: use cuda, cuda:N, mps or cpu"
            ) from error
        available = {
            "cpu": True,
            "cuda": torch.cuda.is_available(),
            "mps": torch.backends.mps.is_available(),
        }.get(device.type, False)
        if not available:
            raise UserError(f"device {requested!r} is not available here: try --device cpu")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def select_dtype(device: torch.device, requested: str | None = None) -> torch.dtype | None:
    """The requested compute type, or the accelerator's default (``DEFAULT_DTYPES``); None on a
    CPU when none is requested: the machine decides at load (``compute_type.choose_cpu_dtype``).
    """
    if not requested:
        return DEFAULT_DTYPES.get(device.type) if device.type != "cpu" else None
    try:
        dtype = _DTYPE_NAMES[requested.lower()]
    except KeyError:
        raise UserError(f"unknown dtype {requested!r}: use fp16, bf16 or fp32") from None
    if dtype == torch.float16 and device.type == "cpu":
        raise UserError(
            "fp16 is not supported on the CPU (many ops are missing or slow): use bf16 or fp32"
        )
    return dtype


def load_model(config: GeneratorConfig) -> StableDiffusionModel:
    """Load ``config.model`` onto the selected device and type, ready for inference."""
    if config.model == AUTO_MODEL:
        raise ValueError("resolve --model auto before loading (model_choice.resolve_model)")
    device = select_device(config.device)
    chosen = select_dtype(device, config.dtype)
    dtype = chosen or torch.float32  # a CPU loads in fp32, then takes the type it measures best
    reference = os.path.expanduser(config.model)
    path = Path(reference)
    if config.model == BUILTIN_MODEL:
        parts = _load_folder(complete_builtin_folder(), dtype)
    elif path.is_dir():
        parts = _load_folder(path, dtype)
    elif path.is_file():
        parts = _load_single_file(path, config.model_config, dtype)
    elif _looks_like_path(reference):
        raise UserError(
            f"no model at {reference}: give a diffusers folder (with model_index.json), a "
            f".safetensors/.ckpt file, or a hub id such as {DEFAULT_MODEL}"
        )
    else:
        parts = _load_from_hub(reference, dtype, config)
    unet, vae, text_encoder, tokenizer, noise_schedule = parts
    folder = complete_builtin_folder() if config.model == BUILTIN_MODEL else path
    light_decoder = _light_decoder(folder, dtype) if folder.is_dir() else None
    convolutional = [vae] if light_decoder is None else [vae, light_decoder]
    for module in (unet, text_encoder, *convolutional):  # already in ``dtype``: loaded with it
        module.to(device=device).eval().requires_grad_(False)
    if chosen is None:
        compute = choose_cpu_dtype(
            cpu_facts(),
            unet_call_timer(unet, unet.config.sample_size, unet.config.cross_attention_dim),
        )
        for module in (unet, text_encoder, *convolutional):
            cast(module, compute.dtype)
        dtype, reason = compute.dtype, compute.reason
    else:
        reason = "asked for with --dtype" if config.dtype else f"{device.type}'s default"
    # Convolutions in channels-last (NHWC) order, the layout cuDNN's and oneDNN's fast kernels
    # want. On a CPU the VAE decoder runs 27-28 % faster in it and the UNet up to 21 % (fp32 on
    # AVX2, bf16 where native), measured side by side (benchmarks/RESULTS.md, "speed levers").
    # The VAE on CUDA is left as it was: not measured there yet.
    if device.type in ("cuda", "cpu"):
        unet.to(memory_format=torch.channels_last)
    if device.type == "cpu":
        for module in convolutional:
            module.to(memory_format=torch.channels_last)
    return StableDiffusionModel(
        unet, vae, text_encoder, tokenizer, noise_schedule, device, dtype,
        source=str(config.model), dtype_reason=reason, light_decoder=light_decoder,
    )


def apply_lora(
    model: StableDiffusionModel, lora: str, scale: float, config: GeneratorConfig
) -> None:
    """Fuse a LoRA (hub id, folder or .safetensors file) into the UNet and text encoder weights.

    Fusing costs nothing per step afterwards, unlike keeping the adapter layers. Uses diffusers'
    own LoRA loader through a throwaway pipeline object, so every LoRA format it knows works.
    """
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline(
        vae=model.vae,
        text_encoder=model.text_encoder,
        tokenizer=model.tokenizer,
        unet=model.unet,
        scheduler=_any_scheduler(model.noise_schedule),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    local = Path(os.path.expanduser(lora))
    if local.exists() or _looks_like_path(lora):
        folder, weight_name = (local.parent, local.name) if local.is_file() else (local, None)
        try:
            pipeline.load_lora_weights(
                str(folder), weight_name=weight_name, adapter_name="preset", local_files_only=True
            )
        except Exception as error:  # a missing or malformed file: the cause is what matters
            raise UserError(f"could not load the LoRA at {lora}: {_summary(error)}") from error
    else:
        _from_hub(
            lora,
            "LoRA",
            config,
            lambda local_only: pipeline.load_lora_weights(
                lora, adapter_name="preset", local_files_only=local_only, cache_dir=config.cache_dir
            ),
        )
    pipeline.fuse_lora(lora_scale=scale)
    pipeline.unload_lora_weights()  # drops the adapter layers; the fused weights stay


# --- the sources ------------------------------------------------------------------------------


def builtin_model_folder() -> Path:
    """Where the built-in model's weights ship: ``streamer/generate/builtin/`` inside the package,
    found through importlib.resources so that an installed wheel finds its own copy."""
    return Path(str(resources.files("streamer.generate") / "builtin"))


def builtin_installed() -> bool:
    """Whether this install has every file of the built-in model."""
    folder = builtin_model_folder()
    return all((folder / name).is_file() for name in BUILTIN_MODEL_FILES)


def complete_builtin_folder() -> Path:
    """The built-in model's folder, or a UserError naming what is missing from it."""
    folder = builtin_model_folder()
    missing = [name for name in BUILTIN_MODEL_FILES if not (folder / name).is_file()]
    if missing:
        what = "is not there" if len(missing) == len(BUILTIN_MODEL_FILES) else (
            "is incomplete: " + ", ".join(missing) + " missing"
        )
        raise UserError(
            f"the built-in model {what} (looked in {folder}).\nTo fix it:\n"
            "  - reinstall streamer from a release or a checkout that has its weights "
            "(`./install.sh`)\n"
            f"  - or pass another model: --model {DEFAULT_MODEL} (4 GB download), or --model PATH"
        )
    return folder


def _load_folder(path: Path, dtype: torch.dtype):
    if not (path / "unet").is_dir():
        raise UserError(
            f"{path} is not a diffusers Stable Diffusion folder (no unet/ inside): give the folder "
            "that holds model_index.json, unet/, vae/, text_encoder/, tokenizer/ and scheduler/"
        )
    try:
        return _load_components(str(path), dtype, local_files_only=True, cache_dir=None)
    except PartNotLoaded as error:
        raise UserError(f"could not load the model folder {path}: {error}") from error


def _light_decoder(folder: Path, dtype: torch.dtype):
    """The folder's light decoder (``light_decoder/``), or None where it has none."""
    from streamer.generate.autoencoder import LIGHT_DECODER_FOLDER
    from streamer.generate.light_decoder import LightDecoder

    if not (folder / LIGHT_DECODER_FOLDER).is_dir():
        return None
    try:
        return LightDecoder.from_pretrained(folder / LIGHT_DECODER_FOLDER, torch_dtype=dtype)
    except Exception as error:  # the library's many ways to fail: one error naming the folder
        raise UserError(
            f"could not load the light decoder in {folder / LIGHT_DECODER_FOLDER}: {error}; "
            "remove that folder to decode with the VAE's decoder"
        ) from error


def _load_from_hub(repo_id: str, dtype: torch.dtype, config: GeneratorConfig):
    return _from_hub(
        repo_id,
        "model",
        config,
        lambda local_only: _load_components(repo_id, dtype, local_only, config.cache_dir),
    )


def _from_hub(repo_id: str, what: str, config: GeneratorConfig, load: Callable[[bool], T]) -> T:
    """``load(local_files_only)`` from the cache, else from the hub, else one clear UserError.

    The cache comes first, so a downloaded model starts without touching the network. A model
    that is in the cache but fails to load for another reason than a missing file (a damaged
    download) is reported as such, with the part that failed, not as missing: downloading again
    would not replace it. Before downloading, one quick request checks that the hub answers: the
    hub client retries a refused connection for half a minute, which a user should not have to
    sit through.
    """
    try:
        return load(True)
    except Exception as error:  # missing, partly downloaded or damaged: sorted out below
        cache_error = error
    snapshot = cached_snapshot(repo_id, config.cache_dir)
    if snapshot is not None and not _is_missing_file(cache_error):
        raise UserError(
            _unloadable_cache_message(repo_id, what, config, snapshot, cache_error)
        ) from cache_error
    if offline_mode(config):
        reason = "offline mode is on (--offline or HF_HUB_OFFLINE=1) and it is not in the cache"
        raise UserError(_missing_from_hub_message(repo_id, what, config, reason)) from cache_error
    problem = hub_problem(repo_id)
    if problem:
        raise UserError(_missing_from_hub_message(repo_id, what, config, problem)) from cache_error
    try:
        return load(False)
    except Exception as error:  # connection, not-found, gated: all mean the same to a user
        reason = f"it is not in the cache and the download failed ({_summary(_root_cause(error))})"
        raise UserError(_missing_from_hub_message(repo_id, what, config, reason)) from error


def cached_snapshot(repo_id: str, cache_dir: str | None) -> Path | None:
    """The folder of ``repo_id``'s cached snapshot (main revision), or None when it has none.

    Says nothing about whether every file is there: see :func:`model_in_cache`.
    """
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True))
    except (OSError, ValueError):  # not cached (LocalEntryNotFoundError), or not a repo id
        return None


def model_in_cache(repo_id: str, cache_dir: str | None) -> bool:
    """Whether a diffusers model's index and the weights of its UNet, VAE and text encoder are
    in the cache, so that loading it needs no network."""
    snapshot = cached_snapshot(repo_id, cache_dir)
    if snapshot is None or not (snapshot / "model_index.json").is_file():
        return False
    return all(
        any(path.suffix in (".safetensors", ".bin") for path in (snapshot / part).glob("*"))
        for part in ("unet", "vae", "text_encoder")
    )


def hub_problem(repo_id: str, timeout_seconds: float = 10.0) -> str | None:
    """Why the hub cannot provide ``repo_id``, in words, or None if it can (one request).

    Asks as the user would download: with their token (``hf auth login`` or ``HF_TOKEN``), so a
    private or gated model they may see is found, and following a renamed repository's redirect.
    One request without retries, where a download would retry a refused connection for half a
    minute.
    """
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        HfApi().model_info(repo_id, timeout=timeout_seconds)
    except RepositoryNotFoundError as error:  # 401 and 404 alike: hidden or absent
        status = error.response.status_code if error.response is not None else "?"
        return (
            f"it is not in the cache and the hub has no model {repo_id!r} that this account can "
            f"see (HTTP {status}; check the name, or log in with `hf auth login` or set HF_TOKEN "
            "if it is private)"
        )
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        return f"it is not in the cache and the hub answered HTTP {status}"
    except Exception as error:  # DNS, refused, timeout, proxy: the hub is out of reach
        cause = _summary(_root_cause(error))
        return f"it is not in the cache and the hub at {constants.ENDPOINT} is unreachable ({cause})"
    return None


def _load_single_file(path: Path, model_config: str | None, dtype: torch.dtype):
    from diffusers import StableDiffusionPipeline

    if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
        raise UserError(
            f"{path} is not a checkpoint file: expected one of {', '.join(SINGLE_FILE_SUFFIXES)}"
        )
    config_dir = Path(os.path.expanduser(model_config)) if model_config else path.parent
    if not (config_dir / "model_index.json").is_file():
        raise UserError(
            f"the single-file checkpoint {path} needs the configs of its architecture and its "
            f"tokenizer, not found in {config_dir}: pass --model-config DIR, a diffusers "
            f"folder of the same architecture (for SD 1.x: `hf download {DEFAULT_MODEL} "
            "--include '*.json' '*.txt' --local-dir DIR`, a few hundred kB)"
        )
    try:
        pipeline = StableDiffusionPipeline.from_single_file(
            str(path),
            config=str(config_dir),
            local_files_only=True,
            torch_dtype=dtype,
            safety_checker=None,
            feature_extractor=None,
        )
    except Exception as error:  # conversion errors come in many types; the user needs the cause
        raise UserError(
            f"could not load {path} as a Stable Diffusion 1.x checkpoint with the configs in "
            f"{config_dir}: {_summary(error)}"
        ) from error
    return (
        pipeline.unet,
        pipeline.vae,
        pipeline.text_encoder,
        pipeline.tokenizer,
        dict(pipeline.scheduler.config),
    )


def _load_components(
    source: str, dtype: torch.dtype, local_files_only: bool, cache_dir: str | None
):
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    common = {"local_files_only": local_files_only, "cache_dir": cache_dir}
    with warnings.catch_warnings():
        # diffusers passes an argument huggingface_hub deprecated; the warning means nothing here.
        warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
        noise_schedule = _part(
            "scheduler",
            lambda: DPMSolverMultistepScheduler.load_config(
                source, subfolder="scheduler", **common
            ),
        )
        tokenizer = _part(
            "tokenizer",
            lambda: CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", **common),
        )
        text_encoder = _part(
            "text_encoder",
            lambda: CLIPTextModel.from_pretrained(
                source, subfolder="text_encoder", dtype=dtype, **common
            ),
        )
        vae = _part(
            "vae",
            lambda: AutoencoderKL.from_pretrained(
                source, subfolder="vae", torch_dtype=dtype, **common
            ),
        )
        unet = _part(
            "unet",
            lambda: UNet2DConditionModel.from_pretrained(
                source, subfolder="unet", torch_dtype=dtype, **common
            ),
        )
    return unet, vae, text_encoder, tokenizer, dict(noise_schedule)


class PartNotLoaded(Exception):
    """One part of a model (its subfolder) failed to load; the library's error is the cause."""

    def __init__(self, part: str, cause: BaseException) -> None:
        super().__init__(f"{part}/: {_summary(cause)}")
        self.part = part


def _part(part: str, load: Callable[[], T]) -> T:
    """``load()``, with the part's name on any error: the libraries' messages often lack it."""
    try:
        return load()
    except Exception as error:  # safetensors, JSON, pickle and hub errors alike
        raise PartNotLoaded(part, error) from error


# --- helpers ----------------------------------------------------------------------------------


def offline_mode(config: GeneratorConfig) -> bool:
    from huggingface_hub import constants

    return config.offline or bool(constants.HF_HUB_OFFLINE)


def _looks_like_path(reference: str) -> bool:
    """Whether a missing ``--model`` was meant as a path rather than a hub id (``owner/name``)."""
    return (
        reference.startswith((".", "/", "~"))
        or reference.count("/") > 1
        or os.sep in reference
        and os.sep != "/"
        or reference.lower().endswith(SINGLE_FILE_SUFFIXES)
    )


def _summary(error: BaseException) -> str:
    """The first line of an exception, with its type when the message alone is unclear."""
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def _is_missing_file(error: BaseException) -> bool:
    """Whether a file was not found anywhere in the exception's chain (a model not, or not
    completely, downloaded), as opposed to a file that is there but cannot be read."""
    from huggingface_hub.errors import EntryNotFoundError

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (FileNotFoundError, EntryNotFoundError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _unloadable_cache_message(
    repo_id: str, what: str, config: GeneratorConfig, snapshot: Path, error: BaseException
) -> str:
    where, cause = snapshot, error
    if isinstance(error, PartNotLoaded) and error.__cause__ is not None:
        where, cause = snapshot / error.part, error.__cause__
    cache_option = f" --cache-dir {config.cache_dir}" if config.cache_dir else ""
    return (
        f"the {what} {repo_id!r} is in the Hugging Face cache but could not be loaded from "
        f"{where}: {_summary(cause)}. A cached "
        "file is probably damaged (an interrupted download, a full disk).\nTo fix it:\n"
        f"  - find the damaged file: `hf cache verify {repo_id}{cache_option}`\n"
        f"  - delete the cached copy: `hf cache rm model/{repo_id}{cache_option}`, or remove the "
        f"folder {snapshot.parent.parent}\n"
        "  - then run this again: it downloads a fresh copy"
    )


def _root_cause(error: BaseException) -> BaseException:
    """The innermost exception of a chain: the connection error under a library's wrapper."""
    while (error.__cause__ or error.__context__) is not None:
        error = error.__cause__ or error.__context__
    return error


def _missing_from_hub_message(repo_id: str, what: str, config: GeneratorConfig, reason: str) -> str:
    from huggingface_hub import constants

    cache = config.cache_dir or constants.HF_HUB_CACHE
    command = f"hf download {repo_id}" if what == "LoRA" else download_command(repo_id)
    fixes = [
        f"download it once where the hub is reachable: `{command}` (the cache can be copied "
        "to this machine)",
    ]
    if what == "LoRA":
        fixes.append("or pass a local LoRA folder or .safetensors file with --lora PATH")
        fixes.append("or choose a preset without a LoRA (--preset default)")
    else:
        fixes.append("or play the model shipped with streamer, no download: --model builtin")
        fixes.append("or pass --model PATH: a local diffusers folder or a .safetensors/.ckpt file")
        fixes.append(
            "or, to smoke-test without weights: `streamer make-tiny-model DIR`, then --model DIR"
        )
    return (
        f"could not load the {what} {repo_id!r} from the Hugging Face hub (cache: {cache}): "
        f"{reason}.\nTo fix it:\n  - " + "\n  - ".join(fixes)
    )


def _any_scheduler(noise_schedule: dict[str, Any]):
    from streamer.generate.schedulers import make_scheduler

    return make_scheduler("ddim", noise_schedule)
