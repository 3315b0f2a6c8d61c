"""Small models to try :func:`initviz.inspect` and :func:`initviz.init_` on (CPU-fast).

Each factory takes no argument, so the command line can build it:
``python -m initviz inspect --model initviz.examples:resnet --input-shape 8,3,8,8``.
"""

from __future__ import annotations

from torch import nn
from torch.nn import functional as F

INPUT_SHAPES = {"resnet": (8, 3, 8, 8), "transformer": (8, 6, 16), "lstm": (8, 5, 12),
                "net": (8, 784)}
"""An input shape (batch first) each factory's model accepts."""


class _Block(nn.Module):
    """``x + conv(relu(bn(conv(relu(bn(x))))))``: a pre-activation residual block."""

    def __init__(self, channels: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x):
        return x + self.conv2(self.relu2(self.bn2(self.conv1(self.relu1(self.bn1(x))))))


class ResNet(nn.Module):
    """A stem convolution, residual blocks, global average pooling and a Linear classifier."""

    def __init__(self, in_channels: int = 3, channels: int = 8, blocks: int = 2,
                 classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.blocks = nn.Sequential(*(_Block(channels) for _ in range(blocks)))
        self.head = nn.Linear(channels, classes)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))


class Transformer(nn.Module):
    """An input projection, ``nn.TransformerEncoderLayer`` blocks, mean pooling, a classifier."""

    def __init__(self, d_in: int = 16, d_model: int = 16, heads: int = 2, layers: int = 2,
                 classes: int = 4):
        super().__init__()
        self.embed = nn.Linear(d_in, d_model)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=32, dropout=0.0,
                                       batch_first=True),
            layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, classes)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x)).mean(dim=1))


class LSTMClassifier(nn.Module):
    """An LSTM over a sequence of feature vectors; a Linear classifier on the last state."""

    def __init__(self, d_in: int = 12, hidden: int = 16, classes: int = 3):
        super().__init__()
        self.lstm = nn.LSTM(d_in, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        output, _ = self.lstm(x)
        return self.head(output[:, -1])


class Net(nn.Module):
    """The weight-initialization tutorial's MNIST MLP: 784 -> 256 -> 128 -> 10, ReLU, dropout."""

    def __init__(self, hidden_1: int = 256, hidden_2: int = 128):
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, hidden_1)
        self.fc2 = nn.Linear(hidden_1, hidden_2)
        self.fc3 = nn.Linear(hidden_2, 10)
        self.dropout = nn.Dropout(0.2)

    def forward(self, x):
        x = x.view(-1, 28 * 28)
        x = self.dropout(F.relu(self.fc1(x)))
        x = self.dropout(F.relu(self.fc2(x)))
        return self.fc3(x)


def weights_init_uniform(m: nn.Module) -> None:
    """The tutorial's ``model.apply(weights_init_uniform)``: Linear weights U(0, 1), bias 0."""
    if m.__class__.__name__.find("Linear") != -1:
        m.weight.data.uniform_(0.0, 1.0)
        m.bias.data.fill_(0)


def resnet() -> ResNet:
    return ResNet()


def transformer() -> Transformer:
    return Transformer()


def lstm() -> LSTMClassifier:
    return LSTMClassifier()


def net() -> Net:
    return Net()


def net_uniform() -> Net:
    """The tutorial's Net after ``model.apply(weights_init_uniform)``."""
    model = Net()
    model.apply(weights_init_uniform)
    return model


__all__ = ["INPUT_SHAPES", "LSTMClassifier", "Net", "ResNet", "Transformer", "lstm", "net",
           "net_uniform", "resnet", "transformer", "weights_init_uniform"]
