"""Neural-network building blocks on odeflow's autodiff: Module, Parameter, layers.

Optimizers live in :mod:`odeflow.optim`.
"""
from odeflow.nn import init
from odeflow.nn.conv import AvgPool2d, ConcatConv2d, Conv2d, Flatten, GlobalAvgPool2d, GroupNorm
from odeflow.nn.layers import (ACTIVATIONS, ELU, MLP, GRUCell, Identity, Linear, ReLU, RNNCell,
                               Sequential, Sigmoid, Softplus, Tanh)
from odeflow.nn.module import (Module, Parameter, parameters_to_vector, split_vector,
                               vector_to_parameters)

__all__ = ["Module", "Parameter", "parameters_to_vector", "vector_to_parameters", "split_vector",
           "Linear", "MLP", "Sequential", "Identity", "Tanh", "ReLU", "ELU", "Sigmoid", "Softplus",
           "RNNCell", "GRUCell", "ACTIVATIONS", "init",
           "Conv2d", "ConcatConv2d", "GroupNorm", "AvgPool2d", "GlobalAvgPool2d", "Flatten"]
