"""A small conv net covering the ops the search spaces produce, and an exported copy of it."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

INPUT_SHAPE = (1, 3, 32, 32)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x):
        s = torch.relu(self.fc1(self.pool(x)))
        return x * nn.functional.hardsigmoid(self.fc2(s))


class TinyNet(nn.Module):
    """Conv/BN/ReLU stem, inverted residual with depthwise conv + SE + hardswish, Linear head."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.expand = nn.Sequential(nn.Conv2d(16, 48, 1, bias=False), nn.BatchNorm2d(48), nn.Hardswish())
        self.dw = nn.Sequential(
            nn.Conv2d(48, 48, 5, 1, 2, groups=48, bias=False), nn.BatchNorm2d(48), nn.Hardswish()
        )
        self.se = SqueezeExcite(48, 12)
        self.project = nn.Sequential(nn.Conv2d(48, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, n_classes))

    def forward(self, x):
        x = self.stem(x)
        x = x + self.project(self.se(self.dw(self.expand(x))))
        return self.head(x)


def make_net(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    net = TinyNet()
    # non-trivial BN statistics so that BN folding is actually exercised
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One intra-op thread: on a loaded 2-core machine OpenMP spinning makes tiny nets ~20x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def net():
    return make_net()


@pytest.fixture(scope="module")
def exported(net, tmp_path_factory):
    from exporters.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    return export_onnx(net, INPUT_SHAPE, path)


@pytest.fixture(scope="module")
def exported_dynamic(net, tmp_path_factory):
    from exporters.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("onnx") / "tiny_dyn.onnx"
    return export_onnx(net, INPUT_SHAPE, path, dynamic_batch=True)


@pytest.fixture
def fresh_net():
    """A new TinyNet (same seed, same weights) that a test may modify."""
    return make_net
