"""Your own data: a CSV file checked with a sentence per problem, trained on, keyed by content."""

import json

import numpy as np
import pytest

from initviz.csvdata import (MAX_CSV_BYTES, MAX_CSV_FEATURES, MAX_CSV_ROWS, CsvData, CsvProblem,
                             csv_columns, read_csv)
from initviz.network import NetworkSpec
from initviz.training import TrainSpec, train

from single_thread import one_thread  # noqa: F401  (autouse: one torch thread)


def _table(rows: int = 40, features: int = 3, label: str = "y") -> bytes:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, features))
    y = np.where(x[:, 0] > 0, "pos", "neg")
    head = ",".join([*(f"f{j}" for j in range(features)), label])
    body = "\n".join(",".join([*(f"{v:.4f}" for v in row), c]) for row, c in zip(x, y))
    return f"{head}\n{body}\n".encode()


GOOD = _table()


def test_a_good_file_is_read_with_the_last_column_as_label():
    data = read_csv(GOOD)
    assert data.label == "y" and data.features == ("f0", "f1", "f2")
    assert data.x.shape == (40, 3) and data.classes == ("neg", "pos")
    assert ((data.x[:, 0] > 0) == (data.y == 1)).all()
    assert csv_columns(GOOD) == ["f0", "f1", "f2", "y"]


MIDDLE = b"a,kind,b\n1,p,2\n3,q,4\n5,p,6\n7,q,8\n"


def test_another_label_column_can_be_chosen():
    data = read_csv(MIDDLE, label="kind")
    assert data.features == ("a", "b") and data.classes == ("p", "q")
    assert data.x.tolist() == [[1, 2], [3, 4], [5, 6], [7, 8]]
    # by default the last column is the label, and the text column is refused as a feature
    with pytest.raises(CsvProblem, match=r"Feature column 'kind', row 2 .* has the text 'p'"):
        read_csv(MIDDLE)


@pytest.mark.parametrize("raw, label, message", [
    (b"", None, r"^The file is empty\.$"),
    (b"   \n", None, r"^The file is empty\.$"),
    (b"a,b,y\n", None, r"header but no rows"),
    (GOOD, "label", r"no column 'label' to use as the label; its columns are 'f0', 'f1'"),
    (GOOD.replace(b"\n0.", b"\nabc", 1), None, r"Feature column 'f0', row \d+ .*has the text"),
    (b"a,b,y\n1,,p\n2,3,q\n4,5,p\n6,7,q\n", None,
     r"Feature column 'b', row 2 of the file .*is empty \(NaN\)"),
    (b"a,b,y\n1,2,p\n2,NaN,q\n4,5,p\n6,7,q\n", None, r"Feature column 'b', row 3 .*empty \(NaN\)"),
    (b"a,b,y\n1,2,p\n2,3,q\n4,inf,p\n6,7,q\n", None, r"row 4 .*is 'inf', not a finite number"),
    (b"a,b,y\n1,2,p\n2,3,p\n4,5,p\n", None, r"has one class only \('p'\)"),
    (b"a,b,y\n1,2,p\n2,3,p\n4,5,q\n", None, r"class 'q' .* has a single row"),
    (b"a,b,y\n1,2,p\n2,3,\n4,5,q\n", None, r"label column 'y' is empty at row 3"),
    (b"y\n1\n2\n", None, r"only the label column 'y'"),
    (b"a,b,y\n1,2,caf\xe9\n", None, r"not UTF-8 text: byte 13 \(line 2\) is 0xe9"),
    (b"a,y\n" + b"1,p\n" * (MAX_CSV_BYTES // 4), None,
     r"bytes, more than the 1,000,000 \(1 MB\)"),
    (b"a,y\n" + b"1,p\n2,q\n" * (MAX_CSV_ROWS // 2 + 1), None,
     r"20,002 rows, more than the 20,000"),
    (_table(rows=4, features=MAX_CSV_FEATURES + 1), None,
     r"257 feature columns, more than the 256"),
    (b'a,b,y\n1,2,p\n"3,4,q\n', None, r"not a CSV table pandas can read"),
])
def test_each_bad_file_gets_a_sentence_naming_the_problem(raw, label, message):
    with pytest.raises(CsvProblem, match=message):
        read_csv(raw, label)


def test_the_data_compare_by_content_hash_and_label_only():
    a, b = read_csv(GOOD), read_csv(bytes(GOOD))
    assert a == b and hash(a) == hash(b)
    assert read_csv(MIDDLE, "kind") != read_csv(MIDDLE.replace(b"kind", b"y"), "y")
    other = read_csv(GOOD.replace(b"1", b"2"))
    assert other != a
    net = NetworkSpec.stack(8, 2)
    assert TrainSpec(net, data=a) == TrainSpec(net, data=b)  # the training cache's key
    assert TrainSpec(net, data=a) != TrainSpec(net, data=other)


def test_a_race_trains_on_the_file():
    spec = TrainSpec(NetworkSpec.stack(16, 2), schemes=("kaiming_normal", "zeros"),
                     data=read_csv(_table(rows=200)), steps=60, eval_every=30, lr=0.2, batch=32)
    assert spec.dataset == "csv" and spec.network.input_dim == 3
    assert spec.data_info.n_classes == 2
    data = spec.load_data()
    assert len(data.y_train) == 150 and len(data.y_val) == 50
    result = train(spec)
    kaiming, zeros = result.runs
    assert kaiming.final.val_acc > 0.9  # the label is the sign of f0
    assert zeros.final.val_acc < 0.8
    unit = TrainSpec(NetworkSpec.stack(16, 2), data=read_csv(_table(rows=200)),
                     input_scale="unit").load_data()
    assert float(unit.x_train.min()) == 0.0 and float(unit.x_train.max()) == 1.0


def test_cli_trains_on_a_csv_and_names_a_bad_one(tmp_path, capsys):
    from initviz.cli import main
    path = tmp_path / "mine.csv"
    path.write_bytes(_table(rows=100))
    code = main(["train", "--data", str(path), "--label", "y", "--width", "8", "--depth", "2",
                 "--steps", "4", "--eval-every", "2", "--json"])
    assert code == 0
    spec = TrainSpec(NetworkSpec.stack(8, 2), schemes=("kaiming_normal",),
                     data=read_csv(_table(rows=100)), steps=4, eval_every=2)
    assert json.loads(capsys.readouterr().out)["runs"] == train(spec).to_json_dict()["runs"]
    code = main(["train", "--data", str(path), "--label", "nope"])
    err = capsys.readouterr().err
    assert code == 2 and "no column 'nope'" in err and "Traceback" not in err
    code = main(["train", "--data", str(tmp_path / "missing.csv")])
    assert code == 2 and "No such file" in capsys.readouterr().err
    code = main(["train", "--label", "y"])
    assert code == 2 and "--label: give it with --data" in capsys.readouterr().err


def test_csvdata_is_not_a_pickle_path():
    # pandas reads text only: a pickle's bytes are refused as text, never unpickled
    import pickle
    with pytest.raises(CsvProblem):
        read_csv(pickle.dumps({"a": 1}))
    assert CsvData.__dataclass_fields__["x"].compare is False
