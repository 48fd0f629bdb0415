"""``--hf-model DIR`` of ``explain-text`` and ``explain-dataset``: a Hugging Face classifier and its tokenizer, both
from one folder (what ``model.save_pretrained(DIR)`` and ``tokenizer.save_pretrained(DIR)`` wrote), and the
transformer presets of ``--composite``.

Nothing here imports ``transformers`` before a command with ``--hf-model`` runs (``seqlrp --version`` stays fast).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common import CliError

if TYPE_CHECKING:
    from torch import nn

#: ``--composite`` of a Hugging Face model: the transformer presets and those of the recurrent families
COMPOSITES = ("attnlrp", "cplrp", "recurrentlrp", "mambalrp")
DEFAULT_EPSILON = 1e-6
#: the options of the LSTM route, which a Hugging Face folder replaces (dest -> (flag, default))
LSTM_ONLY = {"model": ("--model", None), "model_class": ("--model-class", None), "model_arg": ("--model-arg", None),
             "vocab": ("--vocab", None), "lengths": ("--lengths", False), "unk": ("--unk", "<unk>"),
             "bias_factor": ("--bias-factor", 0.0)}
#: files a saved tokenizer consists of (one of them must be in the folder: transformers 5 silently builds an empty
#: tokenizer from a folder without them)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "merges.txt", "tokenizer.model", "spiece.model",
                   "sentencepiece.bpe.model", "spm.model")


def lstm_flags_given(args) -> list[str]:
    """The LSTM-route options given on the command line (those that differ from their default)."""
    return [flag for dest, (flag, default) in LSTM_ONLY.items()
            if dest in vars(args) and getattr(args, dest) not in (default, [])]


def check_hf_flags(args) -> None:
    """``--hf-model`` with an option of the LSTM route: one error naming every such option."""
    given = lstm_flags_given(args)
    if given:
        raise CliError(f"--hf-model takes the model, its tokenizer and its configuration from the folder; "
                       f"{', '.join(given)} {'is an option' if len(given) == 1 else 'are options'} of --model (an "
                       "LSTM/GRU state_dict): leave " + ("it" if len(given) == 1 else "them") + " out")


def transformer_composite(name: str | None, epsilon: float | None, model: nn.Module | None = None):
    """``--composite attnlrp|cplrp|recurrentlrp|mambalrp`` with ``--epsilon`` (default 1e-6) as a preset of
    :mod:`seqlrp.transformers` / :mod:`seqlrp.recurrent`; no name: the model's family default (RecurrentLRP for
    Mamba, Mamba2, RecurrentGemma, RWKV and xLSTM, AttnLRP otherwise)."""
    epsilon = DEFAULT_EPSILON if epsilon is None else epsilon
    name = composite_name(name, model)
    if name not in COMPOSITES:
        raise CliError(f"--composite {name} is an image preset; a Hugging Face model takes {', '.join(COMPOSITES)}")
    if name in ("recurrentlrp", "mambalrp"):
        from ..recurrent import MambaLRP, RecurrentLRP

        return (RecurrentLRP if name == "recurrentlrp" else MambaLRP)(epsilon=epsilon)
    from ..transformers import CPLRP, AttnLRP

    return (AttnLRP if name == "attnlrp" else CPLRP)(epsilon=epsilon)


def composite_name(name: str | None, model: nn.Module | None) -> str:
    """``--composite``, or the default of ``model``'s family: recurrentlrp for the recurrent families, else attnlrp."""
    if name is not None:
        return name
    from ..recurrent.text import family_of

    return "recurrentlrp" if model is not None and family_of(model) is not None else "attnlrp"


@contextmanager
def _quiet_transformers():
    """transformers' loading bars and info logs off while the folder is read (its warnings are turned into one line
    each by the caller); restored afterwards."""
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def _folder(path: str) -> Path:
    folder = Path(path)
    if not folder.exists():
        raise CliError(f"--hf-model folder not found: {folder}")
    if not folder.is_dir():
        raise CliError(f"--hf-model {folder} is a file; pass the folder that model.save_pretrained(DIR) and "
                       "tokenizer.save_pretrained(DIR) wrote")
    if not (folder / "config.json").is_file():
        raise CliError(f"--hf-model {folder} has no config.json; pass the folder that model.save_pretrained(DIR) "
                       "wrote (with the tokenizer's files beside it)")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise CliError(f"--hf-model {folder} holds no tokenizer (none of {', '.join(TOKENIZER_FILES[:3])}, ...); "
                       "save it beside the model: tokenizer.save_pretrained(DIR)")
    return folder


def load_hf(path: str) -> tuple[nn.Module, Any, list[str] | None]:
    """The classifier (``AutoModelForSequenceClassification``, eval mode), the tokenizer (``AutoTokenizer``) and the
    class names of the configuration's ``id2label`` (None when they are transformers' ``LABEL_0``, ...).

    A model type without a sequence-classification class in transformers (Mamba, Mamba2, RWKV, RecurrentGemma,
    xLSTM) is loaded as a causal LM (``AutoModelForCausalLM``): its next-token logits after each sentence are
    explained, and the class names are the tokenizer's tokens."""
    folder = _folder(path)
    try:
        import transformers
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
            MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
        )
    except ImportError:
        raise CliError("--hf-model needs the hf extra: pip install 'seqlrp[hf]' (transformers, tokenizers, "
                       "safetensors)") from None
    options: dict[str, Any] = {"local_files_only": True}
    if hasattr(transformers.PreTrainedModel, "set_use_kernels"):  # (transformers 5: no hub kernels replacing layers)
        options["use_kernels"] = False
    with _quiet_transformers():
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except Exception as error:  # noqa: BLE001 - any unreadable tokenizer is a user error
            raise CliError(f"cannot load the tokenizer of {folder}: {type(error).__name__}: {error}") from None
        try:
            config = AutoConfig.from_pretrained(folder, local_files_only=True)
        except Exception as error:  # noqa: BLE001 - an unreadable configuration is a user error
            raise CliError(f"cannot read the configuration of {folder}: {type(error).__name__}: {error}") from None
        kind = getattr(config, "model_type", None)
        causal = (kind not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
                  and kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
        auto = AutoModelForCausalLM if causal else AutoModelForSequenceClassification
        try:
            model, info = auto.from_pretrained(folder, config=config, output_loading_info=True, **options)
        except Exception as error:  # noqa: BLE001 - a config of another kind of model, missing weights, ...
            raise CliError(f"cannot load {folder} as a {'causal LM' if causal else 'sequence classifier'} "
                           f"({auto.__name__}): {type(error).__name__}: {error}") from None
    missing = list(info.get("missing_keys") or [])
    if missing:
        warnings.warn(f"{folder} holds no weights for {len(missing)} parameter(s) of "
                      f"{type(model).__name__} (e.g. {sorted(missing)[0]}): transformers initialized them at random, "
                      "so the model is not a trained classifier (save the fine-tuned model with save_pretrained)",
                      UserWarning, stacklevel=2)
    embedding = model.get_input_embeddings()
    rows = getattr(embedding, "num_embeddings", None)
    if rows is not None and len(tokenizer) > rows:
        raise CliError(f"the tokenizer of {folder} has {len(tokenizer)} tokens but the model's input embedding has "
                       f"{rows} rows: the folder's tokenizer is not the model's")
    if causal:  # (the explained "classes" are the next tokens)
        return model.eval(), tokenizer, list(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))))
    from ..transformers.batching import class_names

    return model.eval(), tokenizer, class_names(model)
