"""The code examples of the findings, made from this model's path, signature and inputs (pure: no TensorFlow).

``model`` is the measured {"path", "signature", "format"}; ``specs`` the inputs as
{"name", "dtype", "shape"}; the templates are in ``catalogue``.
"""
from __future__ import annotations

from typing import Any

from .._compression.variants import representative_code_for, shape_text
from . import catalogue as text
from .catalogue import SELECTIVE


def converter_code(model: dict[str, Any], specs: list[dict[str, Any]], variant: str, denylisted: list[str] | None = None,
                   select_ops: bool = False, resave: bool = False) -> str:
    """The conversion of ``variant``, from the SavedModel as the check converted it (saved again when ``resave``)."""
    if resave and model["format"] != "keras":
        code = text.RESAVED_HEAD.substitute(path=model["path"], signature=model["signature"])
    elif model["format"] == "keras":
        code = text.KERAS_HEAD.substitute(path=model["path"])
    else:
        code = text.SAVEDMODEL_HEAD.substitute(path=model["path"], signature=model["signature"])
    base = "full-int8" if variant == SELECTIVE else variant
    lines = list(text.VARIANT_LINES[base]) + (text.SELECT_OPS_LINES if select_ops else [])
    if base in ("full-int8", "int16x8"):
        code += "\n" + representative_code_for(specs) + "\n"
    code += "\n".join(lines) + ("\n" if lines else "")
    if variant == SELECTIVE:
        code += text.SELECTIVE_CONVERSION.substitute(denied=",\n".join(f'        "{node}"' for node in denylisted or []))
    else:
        code += text.CONVERT + "\n"
    return code + text.WRITE_FLATBUFFER.substitute(variant=variant)


def feed_code(specs: list[dict[str, Any]], module: str) -> str:
    """Keyword arguments of zeros for every input (dynamic dims as 1), as ``module`` ("tf" or "np") spells them."""
    return ", ".join(f"{s['name']}={module}.zeros({[d or 1 for d in s['shape'] or []]}, {module}.{s['dtype']})" for s in specs)


def crash_reproduction(model: dict[str, Any], specs: list[dict[str, Any]], crash: dict[str, Any]) -> str:
    code = converter_code(model, specs, "float32")
    if crash["stage"] == "conversion":
        return code.replace(text.CONVERT, text.CONVERTER_DIES.substitute(signal=crash["signal"]))
    return text.LITERT_DIES.substitute(code=code, signature=model["signature"], feed=feed_code(specs, "np"), signal=crash["signal"])


def float32_fix_code(model: dict[str, Any], specs: list[dict[str, Any]]) -> str:
    return text.FLOAT32_FIX.substitute(path=model["path"], signature=model["signature"], feed=feed_code(specs, "tf"))


def float64_fix_code(model: dict[str, Any], specs: list[dict[str, Any]]) -> str:
    tensor_specs = ", ".join(
        f'tf.TensorSpec({shape_text(s["shape"])}, tf.{"float32" if s["dtype"] == "float64" else s["dtype"]}, name="{s["name"]}")'
        for s in specs
    )
    return text.FLOAT64_FIX.substitute(path=model["path"], specs=tensor_specs, names=", ".join(s["name"] for s in specs))
