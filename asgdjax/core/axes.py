"""The logical axis names a parameter may carry (a model annotates them, `asgdjax.parallel`'s rules table
maps them to mesh axes): convolution channels in and out, dense inputs and hidden units, the classifier."""

CONV_OUT = "conv_out"
CONV_IN = "conv_in"
HIDDEN = "hidden"
EMBED = "embed"
CLASSES = "classes"
