"""`asgdjax-prepare`: build a dataset's TFDS array_record files, offline from a local .npz if need be.

asgdjax-prepare --dataset=mnist --npz=../shared/data/mnist.npz
asgdjax-prepare --dataset=cifar10 --npz=../shared/data/cifar10_jpeg_q75.npz
"""

from __future__ import annotations

from absl import flags

from asgdjax.cli import fail, run_app

flags.DEFINE_string("dataset", "digits", "Dataset to prepare: digits, mnist, cifar10 or imagenet2012.")
flags.DEFINE_string("npz", None, "Local .npz with x_train/y_train/x_test/y_test (mnist, cifar10).")
flags.DEFINE_string("data_dir", None, "TFDS data dir (default $TFDS_DATA_DIR or ~/tensorflow_datasets).")
flags.DEFINE_string("manual_dir", None, "imagenet2012: the folder holding ILSVRC2012_img_train.tar and _val.tar.")


def main(argv) -> None:
    from asgdjax.data import StreamingDataset, load_dataset, prepare
    from asgdjax.errors import ConfigError

    if len(argv) > 1:
        fail(
            f"unexpected arguments {argv[1:]!r}; name the dataset with --dataset=NAME (digits, mnist, cifar10, imagenet2012)"
        )
    f = flags.FLAGS
    try:
        path = prepare(f.dataset, f.data_dir, f.npz, f.manual_dir)
        d = load_dataset(f.dataset, f.data_dir)
    except ConfigError as e:
        fail(str(e))
    tests = len(d.test) if isinstance(d, StreamingDataset) else len(d.test_labels)
    print(f"{f.dataset}: {d.num_train} train / {tests} test examples in {path}")


def run() -> None:
    run_app(main, "asgdjax-prepare", with_config=False, doc=__doc__)


if __name__ == "__main__":
    run()
