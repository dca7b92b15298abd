"""Dopamine's published agent checkpoints: their file names, fetching them, and reading their
weights into our C51 network without TensorFlow or JAX.

Dopamine publishes trained agents per game and run, e.g. C51 at
`gs://download-dopamine-rl/lucid/c51/{Game}/{run}/tf_ckpt-199.*` (TF1 bundles, read by
fdt.oracle.tfbundle: `Online/Conv/weights`, ...) and JAX pickles for a few games (`ckpt.N`:
`Conv_0/kernel`, ...).
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from fdt.oracle.c51 import C51Network

# The C51 network (and torch) is imported where weights are read, so naming a checkpoint's files
# stays light: the workflow does it while planning.

# --- file names ----------------------------------------------------------------------------------

FORMATS = ("tf", "jax")


def agent_checkpoint_names(fmt: str, number: int) -> list[str]:
    """The files of a Dopamine agent checkpoint (iteration `number`): TF1 bundle or JAX pickle."""
    if fmt == "tf":
        return [f"tf_ckpt-{number}.index", f"tf_ckpt-{number}.data-00000-of-00001",
                f"tf_ckpt-{number}.meta"]
    if fmt == "jax":
        return [f"ckpt.{number}"]
    raise ValueError(f"unknown checkpoint format {fmt!r}; expected one of {', '.join(FORMATS)}")


# --- reading the weights -------------------------------------------------------------------------

# Variable names of each layer, by checkpoint kind: (kernel, bias).
TF_NAMES = [("Online/Conv/weights", "Online/Conv/biases"),
            ("Online/Conv_1/weights", "Online/Conv_1/biases"),
            ("Online/Conv_2/weights", "Online/Conv_2/biases"),
            ("Online/fully_connected/weights", "Online/fully_connected/biases"),
            ("Online/fully_connected_1/weights", "Online/fully_connected_1/biases")]
JAX_NAMES = [(f"{layer}/kernel", f"{layer}/bias")
             for layer in ("Conv_0", "Conv_1", "Conv_2", "Dense_0", "Dense_1")]


def load_tf_checkpoint(prefix: str | Path, num_actions: int) -> C51Network:
    """Dopamine's TF C51 checkpoint (e.g. `.../tf_ckpt-199`), read without TensorFlow."""
    from fdt.oracle.c51 import network_from_tensors
    from fdt.oracle.tfbundle import Bundle

    bundle = Bundle(prefix)
    tensors = {name: bundle.read(name) for pair in TF_NAMES for name in pair if name in bundle}
    return network_from_tensors(tensors, TF_NAMES, num_actions, str(bundle.prefix))


class _FrozenDict(dict):
    """Stands in for flax's FrozenDict when unpickling (its state is {'_dict': ...})."""

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.update(state.get("_dict", state))


def _array_from_jax(fun: Any, args: tuple, arr_state: Any, aval_state: Any) -> np.ndarray:
    """jax arrays pickle as a numpy reconstruction plus its state; keep the numpy array."""
    array = fun(*args)
    array.__setstate__(arr_state)
    return np.asarray(array)


class _OptimizerState:
    """Stands in for optax's optimizer-state classes (Adam's moments, step counts), which
    Dopamine's Checkpointer pickles beside the weights: acting needs none of it, so the stand-in
    takes whatever arguments and state the pickle gives and keeps nothing."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _OptimizerState:
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


class _CheckpointUnpickler(pickle.Unpickler):
    """Unpickles Dopamine's JAX checkpoints to dicts of numpy arrays, with no flax, jax or optax,
    and refuses any class outside a fixed list (a pickle can otherwise run code)."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
               ("numpy._core.numeric", "_frombuffer"), ("copyreg", "_reconstructor"),
               ("builtins", "object"), ("builtins", "dict"), ("collections", "OrderedDict")}
    # The states of the optimizers Dopamine's create_optimizer builds (adam, rmsprop, sgd, with a
    # schedule or not), by their exact module and name in the optax versions it has used.
    OPTIMIZER_STATES = {("optax._src.transform", name) for name in (
        "ScaleByAdamState", "ScaleByRmsState", "ScaleByRStdDevState", "ScaleByScheduleState",
        "ScaleState")} | {("optax._src.base", "EmptyState")}

    def find_class(self, module: str, name: str) -> Any:
        if name == "FrozenDict" and module.startswith("flax"):
            return _FrozenDict
        if name == "_reconstruct_array" and module.startswith("jax"):
            return _array_from_jax
        if (module, name) in self.OPTIMIZER_STATES:
            return _OptimizerState
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a checkpoint pickle")


# Dopamine's parameter trees are 3 deep (params/Conv_0/kernel); anything far deeper is not one.
MAX_TREE_DEPTH = 16


def _flatten(tree: Mapping[str, Any], origin: str) -> dict[str, np.ndarray]:
    """A parameter tree as {'Conv_0/kernel': array, ...}, walked without recursion (a hostile
    pickle can nest thousands deep); every leaf must be a numeric array."""
    from fdt.oracle.c51 import OracleError

    out: dict[str, np.ndarray] = {}
    pending: list[tuple[str, Mapping[str, Any], int]] = [("", tree, 1)]
    while pending:
        prefix, node, depth = pending.pop()
        if depth > MAX_TREE_DEPTH:
            raise OracleError(f"{origin}: the parameter tree nests deeper than {MAX_TREE_DEPTH} "
                              f"levels at '{prefix.rstrip('/')}'; Dopamine's is 3 deep")
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, Mapping):
                pending.append((f"{name}/", value, depth + 1))
            elif isinstance(value, np.ndarray) and value.dtype.kind in "fiu":
                out[name] = value
            else:
                raise OracleError(f"{origin}: parameter '{name}' is {_describe(value)}, not a "
                                  "numeric array")
    return out


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of {value.dtype}"
    return f"a {type(value).__name__}"


def load_jax_checkpoint(path: str | Path, num_actions: int) -> C51Network:
    """Dopamine's JAX C51 checkpoint pickle (its `online_params`), read without jax, flax or
    optax; the optimizer state beside the weights is skipped. A pickle that is not one gives
    an OracleError naming the file, whatever its shape."""
    from fdt.oracle.c51 import OracleError, network_from_tensors

    path = Path(path)
    try:
        with open(path, "rb") as f:
            bundle = _CheckpointUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError, KeyError,
            IndexError, RecursionError) as err:  # a damaged or hostile pickle, besides a refusal
        raise OracleError(f"{path}: not a readable Dopamine JAX checkpoint ({err})") from None
    if not isinstance(bundle, Mapping):
        raise OracleError(f"{path}: the checkpoint holds {_describe(bundle)}, not Dopamine's "
                          "dict of 'online_params' and optimizer state")
    params = bundle.get("online_params")
    if params is None:
        raise OracleError(f"{path}: no 'online_params' in the checkpoint")
    if not isinstance(params, Mapping):
        raise OracleError(f"{path}: 'online_params' is {_describe(params)}, not a parameter tree")
    tree = params.get("params", params)
    if not isinstance(tree, Mapping):
        raise OracleError(f"{path}: 'online_params/params' is {_describe(tree)}, not a parameter "
                          "tree")
    return network_from_tensors(_flatten(tree, str(path)), JAX_NAMES, num_actions, str(path))


# --- Dopamine's published checkpoints ---------------------------------------------------------

ORACLE_REFUSAL = (
    "Alternatives: set oracle.source.kind to 'https' with oracle.source.url a mirror template "
    "('https://host/c51/{game}/{run}/{name}') or to 'local' with oracle.source.path a folder "
    "holding {Game}/{run}/{name}; or set oracle.kind to 'offline' to train an oracle on the "
    "replay data, or to 'published' to use the FDT authors' label files.")


def load_c51(folder: str | Path, fmt: str, number: int, num_actions: int) -> C51Network:
    """Dopamine's C51 checkpoint `number` in `folder`, in either format, as our network."""
    folder = Path(folder)
    if fmt == "tf":
        return load_tf_checkpoint(folder / f"tf_ckpt-{number}", num_actions)
    return load_jax_checkpoint(folder / agent_checkpoint_names(fmt, number)[0], num_actions)


def fetch_c51_checkpoint(source: Any, game: str, run: int, number: int, fmt: str,
                         dest: str | Path, num_actions: int, *,
                         progress: bool = True) -> dict[str, Any]:
    """Fetch Dopamine's C51 checkpoint through the replay's source machinery (staging,
    resume, size and hash checks), loading the staged copy as a C51 for this game before it
    is kept: a checkpoint that is not one is refused naming the source's file and the copy,
    and nothing is left in `dest`."""
    from fdt.oracle.c51 import OracleError
    from fdt.replay.sources import SourceRefusedError, fetch_files

    if hasattr(source, "refusal_hint"):
        source.refusal_hint = ORACLE_REFUSAL
    try:
        record = fetch_files(source, game, run, agent_checkpoint_names(fmt, number), dest,
                             progress=progress, label=f"C51 {game}/{run}/{number}",
                             check=lambda staged: load_c51(staged, fmt, number, num_actions),
                             check_errors=(OracleError,))
    except SourceRefusedError as err:
        raise SourceRefusedError(f"the C51 checkpoint of {game} run {run} could not be fetched: "
                                 f"{err}") from None
    return {**record, "checkpoint": number, "format": fmt, "checked": "loaded as C51"}


def load_oracle(kind: str, first_file: str | Path, settings: Mapping[str, Any],
                num_actions: int) -> Any:
    """The oracle's network of a kind, from the first of its files: our offline C51
    (`oracle.pt`), Dopamine's published C51 (its checkpoint's folder), or a trained offline agent
    (`agent.pt`). Each gives `q_values` and `num_actions`, all labelling and scoring need."""
    if kind == "offline":
        from fdt.oracle.c51 import load_network

        return load_network(first_file, num_actions)
    if kind == "dopamine":
        return load_c51(Path(first_file).parent, settings["format"], settings["checkpoint"],
                        num_actions)
    if kind == "agent":
        # Imported by name, out of the stages' import graph on purpose: an agent oracle's key
        # has the agent's key (which covers the agents' code) as its input, so editing an
        # agent must not make the other oracle kinds' labels stale.
        agents = importlib.import_module("fdt.agents.training")
        return agents.load_agent_network(first_file, num_actions)
    raise ValueError(f"oracle kind {kind!r} has no network (expected offline, dopamine or agent)")
