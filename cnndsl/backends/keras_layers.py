"""The Keras layers cnndsl needs and Keras 3 lacks, for any backend (keras.ops only).

This module imports keras and nothing else: `cnndsl build` copies the source of the
classes a network uses into the module it writes, and the runtime imports them from
here. Each is registered under the package "cnndsl", so a saved model.keras loads again.
"""

import keras


@keras.saving.register_keras_serializable(package="cnndsl")
class LayerScale(keras.layers.Layer):
    """ConvNeXt's layer scale: each channel times a learned factor, started at
    `init_values` (as keras.applications.convnext.LayerScale, sized from the input)."""

    def __init__(self, init_values, **kwargs):
        super().__init__(**kwargs)
        self.init_values = init_values

    def build(self, input_shape):
        self.gamma = self.add_weight(
            shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(self.init_values),
            name="gamma",
        )

    def call(self, inputs):
        return inputs * self.gamma

    def get_config(self):
        return {**super().get_config(), "init_values": self.init_values}


@keras.saving.register_keras_serializable(package="cnndsl")
class ChannelShuffle(keras.layers.Layer):
    """ShuffleNet's channel shuffle: the channels, seen as `groups` rows, transposed."""

    def __init__(self, groups, **kwargs):
        super().__init__(**kwargs)
        self.groups = groups

    def build(self, input_shape):
        if input_shape[-1] % self.groups:
            raise ValueError(
                f"{input_shape[-1]} channels do not split into {self.groups} groups"
            )

    def call(self, inputs):
        h, w, c = inputs.shape[1:]
        x = keras.ops.reshape(inputs, (-1, h, w, self.groups, c // self.groups))
        x = keras.ops.transpose(x, (0, 1, 2, 4, 3))
        return keras.ops.reshape(x, (-1, h, w, c))

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}


@keras.saving.register_keras_serializable(package="cnndsl")
class GELU(keras.layers.Layer):
    """GELU with Keras's `approximate` setting (the tanh form when true)."""

    def __init__(self, approximate=False, **kwargs):
        super().__init__(**kwargs)
        self.approximate = approximate

    def call(self, inputs):
        return keras.activations.gelu(inputs, approximate=self.approximate)

    def get_config(self):
        return {**super().get_config(), "approximate": self.approximate}


@keras.saving.register_keras_serializable(package="cnndsl")
class LocallyConnected2D(keras.layers.Layer):
    """Keras 2's LocallyConnected2D (valid padding): a convolution whose weights are not
    shared, each output position with its own kernel and its own bias per filter.

    The kernel is (positions, kh * kw * channels, filters), as Keras 2 stored it.
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        activation=None,
        use_bias=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if padding != "valid":
            raise ValueError(f"only `valid` padding, as in Keras 2; not {padding!r}")
        self.filters = filters
        self.kernel_size = tuple(kernel_size)
        self.strides = tuple(strides)
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias

    def _output_size(self, input_shape):
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        return (input_shape[1] - kh) // sh + 1, (input_shape[2] - kw) // sw + 1

    def build(self, input_shape):
        out_h, out_w = self._output_size(input_shape)
        if out_h < 1 or out_w < 1:
            raise ValueError(
                f"the {self.kernel_size} kernel does not fit in the input {input_shape}"
            )
        patch = self.kernel_size[0] * self.kernel_size[1] * input_shape[-1]
        self.kernel = self.add_weight(
            shape=(out_h * out_w, patch, self.filters),
            initializer="glorot_uniform",
            name="kernel",
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(out_h, out_w, self.filters), initializer="zeros", name="bias"
            )

    def call(self, inputs):
        patches = keras.ops.image.extract_patches(
            inputs, self.kernel_size, strides=self.strides, padding="valid"
        )
        _, out_h, out_w, patch = patches.shape
        patches = keras.ops.reshape(patches, (-1, out_h * out_w, patch))
        x = keras.ops.einsum("bpk,pkf->bpf", patches, self.kernel)
        x = keras.ops.reshape(x, (-1, out_h, out_w, self.filters))
        if self.bias is not None:
            x = x + self.bias
        return self.activation(x)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self._output_size(input_shape), self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": "valid",
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
        }
