"""ILSVRC-2012 with the one-GPU AlexNet, momentum SGD as cuda-convnet trained it (Krizhevsky et al. 2012):
batch 128, lr 0.01, momentum 0.9, weight decay 5e-4, about 90 epochs, random 224 crops of the central
256x256 of the image (shorter side rescaled to 256) and horizontal flips, made on the host per batch.

Prepare: put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (image-net.org) in a folder, then
         asgdjax-prepare --dataset=imagenet2012 --manual_dir=FOLDER    (writes $TFDS_DATA_DIR/asgd_imagenet2012)
Run:     asgdjax-train --config=asgdjax/configs/alexnet_imagenet.py --workdir=runs/alexnet_imagenet
Budget:  900,820 steps of 128 (90 epochs of 1,281,167 images); the paper cut the rate by 10 by hand three
         times when validation error stalled, which no schedule here expresses: cosine decays it over the run.
Expect:  not measured here (no GPU, no ILSVRC-2012 archives on this machine)
Async:   add --config.mode=async --config.num_workers=4 (GPU A-SGD clients), or mode=sim to simulate them
"""

from asgdjax.configs.base import base_config

EPOCHS = 90
TRAIN_IMAGES = 1_281_167


def get_config():
    c = base_config()
    c.dataset = "imagenet2012"
    c.model = "alexnet"
    c.augment = False  # crop + flip happen on the host in asgdjax.data.imagenet (ImageNetSource.load)
    c.batch_size = 128
    c.steps = EPOCHS * TRAIN_IMAGES // 128
    c.optimizer = "momentum"
    c.learning_rate = 0.01
    c.momentum = 0.9
    c.weight_decay = 5e-4
    c.lr_schedule = "cosine"
    c.log_every = 100
    c.eval_every = TRAIN_IMAGES // 128  # once an epoch (50,000 validation images)
    c.checkpoint_every = 5000
    return c
