"""The TF bundle reader on a checkpoint TensorFlow wrote; Dopamine's C51 in torch against numpy."""

from __future__ import annotations

import pickle
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from fdt.oracle.c51 import (
    FEATURES,
    NUM_ATOMS,
    C51Network,
    OracleError,
    greedy_actions,
    network_from_tensors,
    same_padding,
)
from fdt.oracle.checkpoints import TF_NAMES, load_jax_checkpoint, load_tf_checkpoint
from fdt.oracle.tfbundle import Bundle, BundleError

FIXTURES = Path(__file__).parent / "fixtures" / "tf_checkpoint"
PREFIX = FIXTURES / "tf_ckpt-199"


def test_bundle_returns_every_fixture_tensor_exactly() -> None:
    expected = np.load(FIXTURES / "tiny_c51_expected.npz")
    tensors = Bundle(PREFIX).read_all()
    assert sorted(tensors) == sorted(k.replace("__", "/") for k in expected.files)
    assert len(tensors) == 35
    for key in expected.files:
        value = tensors[key.replace("__", "/")]
        assert value.dtype == expected[key].dtype and value.shape == expected[key].shape, key
        assert np.array_equal(value, expected[key]), key
    assert tensors["global_step"].dtype == np.int64
    assert tensors["Online/Conv/weights"].shape == (8, 8, 4, 3)


def test_bundle_damage_is_named(tmp_path: Path) -> None:
    for name in ("tf_ckpt-199.index", "tf_ckpt-199.data-00000-of-00001"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    data = tmp_path / "tf_ckpt-199.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[100] ^= 0xFF
    data.write_bytes(bytes(raw))
    bundle = Bundle(tmp_path / "tf_ckpt-199")
    with pytest.raises(BundleError, match="crc32c"):
        bundle.read_all()
    with pytest.raises(BundleError, match="no tensor 'Online/Conv_2/weights'"):
        bundle.read("Online/Conv_2/weights")
    data.write_bytes(bytes(raw[:1000]))
    with pytest.raises(BundleError, match="truncated"):
        Bundle(tmp_path / "tf_ckpt-199").read("Target/fully_connected_1/biases")
    index = tmp_path / "tf_ckpt-199.index"
    index.write_bytes(index.read_bytes()[:-3])
    with pytest.raises(BundleError, match="tf_ckpt-199.index"):
        Bundle(tmp_path / "tf_ckpt-199")


def test_tiny_fixture_is_not_taken_for_a_c51() -> None:
    with pytest.raises(OracleError, match="missing Online/Conv_2/weights"):
        load_tf_checkpoint(PREFIX, num_actions=2)


def test_same_padding_matches_tensorflow() -> None:
    assert same_padding(84, 8, 4) == (2, 2)
    assert same_padding(21, 4, 2) == (1, 2)  # the asymmetric pad of the second conv
    assert same_padding(11, 3, 1) == (1, 1)


# --- a plain numpy Dopamine C51 (NHWC, SAME padding) -------------------------------------------


def conv2d_same_nhwc(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, stride: int) -> np.ndarray:
    n, h, w, c = x.shape
    k = kernel.shape[0]
    out_h = -(-h // stride)
    before, after = same_padding(h, k, stride)
    padded = np.pad(x, ((0, 0), (before, after), (before, after), (0, 0)))
    out = np.empty((n, out_h, out_h, kernel.shape[3]), dtype=np.float64)
    for i in range(out_h):
        for j in range(out_h):
            patch = padded[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
            out[:, i, j, :] = np.tensordot(patch, kernel, axes=([1, 2, 3], [0, 1, 2]))
    return out + bias


def dopamine_c51_numpy(states_nhwc: np.ndarray, tensors: dict[str, np.ndarray]) -> np.ndarray:
    x = states_nhwc.astype(np.float64) / 255.0
    for (kernel, bias), stride in zip(TF_NAMES[:3], (4, 2, 1)):
        x = np.maximum(conv2d_same_nhwc(x, tensors[kernel], tensors[bias], stride), 0)
    x = x.reshape(len(x), -1)  # NHWC flatten: height-width-channel
    assert x.shape[1] == FEATURES
    x = np.maximum(x @ tensors[TF_NAMES[3][0]] + tensors[TF_NAMES[3][1]], 0)
    logits = (x @ tensors[TF_NAMES[4][0]] + tensors[TF_NAMES[4][1]]).reshape(len(x), -1, NUM_ATOMS)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return (p * np.linspace(-10, 10, NUM_ATOMS)).sum(-1)


def random_tensors(num_actions: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    shapes = [((8, 8, 4, 32), (32,)), ((4, 4, 32, 64), (64,)), ((3, 3, 64, 64), (64,)),
              ((FEATURES, 512), (512,)), ((512, num_actions * NUM_ATOMS), (num_actions * NUM_ATOMS,))]
    tensors = {}
    for (kernel, bias), (ks, bs) in zip(TF_NAMES, shapes):
        fan_in = int(np.prod(ks[:-1]))
        tensors[kernel] = (rng.standard_normal(ks) * (2.0 / fan_in) ** 0.5).astype(np.float32)
        tensors[bias] = (rng.standard_normal(bs) * 0.1).astype(np.float32)
    return tensors


def test_torch_c51_equals_numpy_dopamine() -> None:
    rng = np.random.default_rng(0)
    tensors = random_tensors(4, rng)
    states = rng.integers(0, 256, size=(3, 4, 84, 84), dtype=np.uint8)
    net = network_from_tensors(tensors, TF_NAMES, 4, "random weights")
    with torch.no_grad():
        q = net.q_values(torch.from_numpy(states)).numpy()
    expected = dopamine_c51_numpy(states.transpose(0, 2, 3, 1), tensors)
    np.testing.assert_allclose(q, expected, rtol=1e-4, atol=1e-5)
    actions, q_batched = greedy_actions(net, states, batch_size=2)
    assert np.array_equal(actions, expected.argmax(1))
    np.testing.assert_allclose(q_batched, q, rtol=1e-5, atol=1e-6)


def test_checkpoint_for_another_game_is_refused() -> None:
    tensors = random_tensors(4, np.random.default_rng(1))
    with pytest.raises(OracleError, match=r"204 units = 4 actions x 51 atoms, but the game has 18"):
        network_from_tensors(tensors, TF_NAMES, 18, "ckpt")
    tensors["Online/Conv_1/weights"] = tensors["Online/Conv_1/weights"][:3]
    with pytest.raises(OracleError, match="Online/Conv_1/weights has shape"):
        network_from_tensors(tensors, TF_NAMES, 4, "ckpt")


def test_jax_pickle_loads_without_flax(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pickle made the way Dopamine's JAX checkpointer makes it (flax FrozenDict params)."""
    module = types.ModuleType("flax.core.frozen_dict")

    class FrozenDict:  # what flax pickles: an object whose state is {'_dict': ..., '_hash': ...}
        def __init__(self, d: dict) -> None:
            self._dict, self._hash = d, None

    FrozenDict.__module__ = "flax.core.frozen_dict"
    FrozenDict.__qualname__ = "FrozenDict"
    module.FrozenDict = FrozenDict
    for name in ("flax", "flax.core", "flax.core.frozen_dict"):
        monkeypatch.setitem(sys.modules, name, module if name.endswith("frozen_dict")
                            else types.ModuleType(name))
    rng = np.random.default_rng(2)
    tf = random_tensors(3, rng)
    layers = ("Conv_0", "Conv_1", "Conv_2", "Dense_0", "Dense_1")
    params = {layer: {"kernel": tf[k], "bias": tf[b]} for layer, (k, b) in zip(layers, TF_NAMES)}
    path = tmp_path / "ckpt.199"
    with open(path, "wb") as f:
        pickle.dump({"online_params": FrozenDict({"params": params}), "training_steps": 5}, f)
    net = load_jax_checkpoint(path, 3)
    reference = network_from_tensors(tf, TF_NAMES, 3, "tf")
    states = torch.from_numpy(rng.integers(0, 256, size=(2, 4, 84, 84), dtype=np.uint8))
    with torch.no_grad():
        assert torch.equal(net.q_values(states), reference.q_values(states))

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"online_params": types.SimpleNamespace()}))
    with pytest.raises(OracleError, match="refusing to load types.SimpleNamespace"):
        load_jax_checkpoint(evil, 3)


class _Deep:
    """{'online_params': {'level': {'level': ... 1}}} nested `depth` deep, written as pickle
    opcodes by hand (pickle.dumps itself recurses and cannot write it)."""

    def __init__(self, depth: int) -> None:
        self.depth = depth

    def pickled(self) -> bytes:
        def text(value: str) -> bytes:
            return b"X" + len(value).to_bytes(4, "little") + value.encode()

        nested = b"}" + text("level")
        return (b"\x80\x02}" + text("online_params") + nested * self.depth + b"K\x01"
                + b"s" * (self.depth + 1) + b".")


@pytest.mark.parametrize("bundle, message", [
    ({"online_params": [1, 2]}, r"'online_params' is a list, not a parameter tree"),
    ({"online_params": {"params": "weights"}}, r"'online_params/params' is a str, not a parameter"),
    ({"online_params": {"params": {"Conv_0": {"kernel": "x"}}}},
     r"parameter 'Conv_0/kernel' is a str, not a numeric array"),
    ({"online_params": {"Conv_0": {"kernel": None}}},
     r"parameter 'Conv_0/kernel' is a NoneType, not a numeric array"),
    ({"online_params": {"Conv_0": {"kernel": np.array(["a"])}}},
     r"parameter 'Conv_0/kernel' is an array of <U1, not a numeric array"),
    (_Deep(5000), r"nests deeper than 16 levels at 'level/level/"),
    ([("online_params", 1)], r"the checkpoint holds a list, not Dopamine's dict"),
])
def test_malformed_jax_pickle_is_named(tmp_path: Path, bundle: object, message: str) -> None:
    """Issue 27: each of these gave a bare AttributeError or RecursionError; each is now the
    loader's error naming the file and what is wrong in it."""
    path = tmp_path / "ckpt.199"
    path.write_bytes(bundle.pickled() if isinstance(bundle, _Deep) else pickle.dumps(bundle))
    with pytest.raises(OracleError, match=rf"^{path}: .*{message}"):
        load_jax_checkpoint(path, 4)


def test_network_shapes() -> None:
    net = C51Network(6)
    logits = net(torch.zeros(2, 4, 84, 84, dtype=torch.uint8))
    assert logits.shape == (2, 6, NUM_ATOMS)
    assert net.fc.in_features == 7744


# --- Dopamine's JAX checkpoint as its Checkpointer writes it: weights beside optax's state -------


def _reconstruct_array(fun: object, args: tuple, arr_state: object, aval_state: dict) -> None:
    """Pickled by reference at jax's path, as jax pickles its arrays; never called."""
    raise AssertionError("only written into pickles")


_reconstruct_array.__module__ = "jax._src.array"


class _FakeJaxArray:
    """Pickles the way a jax Array does: jax._src.array._reconstruct_array with numpy's own
    reconstruction of the value, so the pickle holds jax's path but loading needs no jax."""

    def __init__(self, value: np.ndarray) -> None:
        self.value = value

    def __reduce__(self) -> tuple:
        fun, args, arr_state = self.value.__reduce__()
        return _reconstruct_array, (fun, args, arr_state, {"weak_type": False})


def _optax_modules(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """Modules at optax's and jax's class paths, with classes named as optax names them, for
    writing a pickle only; the caller removes them before loading."""
    from collections import namedtuple

    transform = types.ModuleType("optax._src.transform")
    base = types.ModuleType("optax._src.base")
    array = types.ModuleType("jax._src.array")
    classes = {"ScaleByAdamState": "count mu nu", "ScaleByRmsState": "nu",
               "ScaleByRStdDevState": "mu nu", "ScaleByScheduleState": "count", "ScaleState": ""}
    for name, fields in classes.items():
        setattr(transform, name, namedtuple(name, fields, module=transform.__name__))
    base.EmptyState = namedtuple("EmptyState", "", module=base.__name__)
    array._reconstruct_array = _reconstruct_array
    for module in (types.ModuleType("optax"), types.ModuleType("optax._src"), transform, base,
                   types.ModuleType("jax"), types.ModuleType("jax._src"), array):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    return types.SimpleNamespace(transform=transform, base=base)


@pytest.mark.parametrize("protocol", [3, 4, 5])  # Python 3 writes 3 to 5 by default
def test_genuine_dopamine_jax_bundle_loads_weights_and_skips_the_optimizer_state(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: int) -> None:
    rng = np.random.default_rng(3)
    tf = random_tensors(4, rng)
    layers = ("Conv_0", "Conv_1", "Conv_2", "Dense_0", "Dense_1")

    def tree(scale: float) -> dict:
        return {"params": {layer: {"kernel": _FakeJaxArray(tf[k] * scale),
                                   "bias": _FakeJaxArray(tf[b] * scale)}
                           for layer, (k, b) in zip(layers, TF_NAMES)}}

    path = tmp_path / "ckpt.199"
    with monkeypatch.context() as writing:
        optax = _optax_modules(writing)
        t = optax.transform
        count = _FakeJaxArray(np.asarray(7, dtype=np.int32))
        # optax.adam is chain(scale_by_adam, scale(-lr)); rmsprop and a schedule add the others.
        optimizer_state = (t.ScaleByAdamState(count, tree(0.1), tree(0.01)),
                           t.ScaleByRmsState(tree(0.2)),
                           t.ScaleByRStdDevState(tree(0.3), tree(0.4)),
                           t.ScaleByScheduleState(count), t.ScaleState(), optax.base.EmptyState())
        bundle = {"state": np.zeros((1, 84, 84, 4), dtype=np.uint8), "training_steps": 50_000_000,
                  "online_params": tree(1.0), "target_params": tree(2.0),
                  "optimizer_state": optimizer_state}
        path.write_bytes(pickle.dumps(bundle, protocol=protocol))
    assert "optax" not in sys.modules and "optax._src.transform" not in sys.modules
    net = load_jax_checkpoint(path, 4)
    assert "optax" not in sys.modules and "jax" not in sys.modules and "flax" not in sys.modules
    layers_torch = [*net.convs, net.fc, net.head]
    for layer, (kernel, bias) in zip(layers_torch, TF_NAMES):
        expected = tf[kernel].transpose(3, 2, 0, 1) if tf[kernel].ndim == 4 else tf[kernel].T
        assert np.array_equal(layer.weight.detach().numpy(), expected), kernel
        assert np.array_equal(layer.bias.detach().numpy(), tf[bias]), bias


class _Runs:
    """Pickles as a call of `fun(*args)`: what a hostile checkpoint carries."""

    def __init__(self, fun: object, *args: object) -> None:
        self.fun, self.args = fun, args

    def __reduce__(self) -> tuple:
        return self.fun, self.args


@pytest.mark.parametrize("call", ["os.system", "builtins.eval", "builtins.exec",
                                  "optax._src.transform.system"])
def test_jax_pickle_that_runs_code_is_refused(tmp_path: Path, call: str) -> None:
    import builtins
    import os

    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pkl"
    if call == "optax._src.transform.system":  # a call beside the stand-ins' module: no match
        evil.write_bytes(f"coptax._src.transform\nsystem\n(Vtouch {marker}\ntR.".encode())
    else:
        fun = {"os.system": os.system, "builtins.eval": builtins.eval,
               "builtins.exec": builtins.exec}[call]
        arg = f"touch {marker}" if call == "os.system" else f"open({str(marker)!r}, 'w').close()"
        evil.write_bytes(pickle.dumps({"online_params": {}, "optimizer_state": _Runs(fun, arg)}))
    with pytest.raises(OracleError, match=r"evil\.pkl: .*refusing to load"):
        load_jax_checkpoint(evil, 3)
    assert not marker.exists()
