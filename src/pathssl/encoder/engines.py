"""The engines that can run a tile encoder (names only: importing this loads no PyTorch, so
the command line's help and option checks stay fast)."""

ENGINES = ("auto", "pytorch", "openvino", "openvino-bf16")
PRECISION = {"openvino": "f32", "openvino-bf16": "bf16"}  # of the OpenVINO engines
