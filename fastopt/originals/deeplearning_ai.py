"""The update functions of the Deep Learning Specialization's Course 2 notebook
"Optimization methods" (parameters ``W1, b1, ...``, gradients ``dW1, db1, ...``)."""

import numpy as np


def update_parameters_with_gd(parameters, grads, learning_rate):
    L = len(parameters) // 2
    for n in range(1, L + 1):
        parameters["W" + str(n)] = parameters["W" + str(n)] - learning_rate * grads["dW" + str(n)]
        parameters["b" + str(n)] = parameters["b" + str(n)] - learning_rate * grads["db" + str(n)]
    return parameters


def update_parameters_with_momentum(parameters, grads, v, beta, learning_rate):
    L = len(parameters) // 2
    for n in range(1, L + 1):
        for p in ("W", "b"):
            v["d" + p + str(n)] = beta * v["d" + p + str(n)] + (1 - beta) * grads["d" + p + str(n)]
            parameters[p + str(n)] = parameters[p + str(n)] - learning_rate * v["d" + p + str(n)]
    return parameters, v


def update_parameters_with_adam(parameters, grads, v, s, t, learning_rate=0.01, beta1=0.9,
                                beta2=0.999, epsilon=1e-8):
    L = len(parameters) // 2
    v_corrected, s_corrected = {}, {}
    for n in range(1, L + 1):
        for p in ("W", "b"):
            k = "d" + p + str(n)
            v[k] = beta1 * v[k] + (1 - beta1) * grads[k]
            v_corrected[k] = v[k] / (1 - np.power(beta1, t))
            s[k] = beta2 * s[k] + (1 - beta2) * np.power(grads[k], 2)
            s_corrected[k] = s[k] / (1 - np.power(beta2, t))
            parameters[p + str(n)] = parameters[p + str(n)] - learning_rate * v_corrected[k] / (
                np.sqrt(s_corrected[k]) + epsilon)
    return parameters, v, s, v_corrected, s_corrected
