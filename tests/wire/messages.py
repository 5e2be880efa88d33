"""Hypothesis strategies for any protobuf message, built from its descriptor: every field may be
set to any value its type allows (NaN and infinities, huge integers, any Unicode, unknown enum
numbers), nested and repeated fields included, to a bounded depth."""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor, message, message_factory
from hypothesis import strategies as st

FD = descriptor.FieldDescriptor
INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
UINT32 = st.integers(0, 2**32 - 1)
UINT64 = st.integers(0, 2**64 - 1)
# Small values and edges come up more often than uniform draws would give them.
SMALL = st.integers(-3, 300)


def _scalar(field: descriptor.FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        width = 32 if kind == FD.TYPE_FLOAT else 64
        return st.floats(width=width, allow_nan=True, allow_infinity=True)
    if kind in (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64):
        return st.one_of(SMALL, INT64)
    if kind in (FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32):
        return st.one_of(SMALL, INT32)
    if kind in (FD.TYPE_UINT64, FD.TYPE_FIXED64):
        return st.one_of(st.integers(0, 300), UINT64)
    if kind in (FD.TYPE_UINT32, FD.TYPE_FIXED32):
        return st.one_of(st.integers(0, 300), UINT32)
    if kind == FD.TYPE_BOOL:
        return st.booleans()
    if kind == FD.TYPE_STRING:
        return st.text(max_size=40)
    if kind == FD.TYPE_BYTES:
        return st.binary(max_size=40)
    if kind == FD.TYPE_ENUM:
        known = [value.number for value in field.enum_type.values]
        return st.one_of(st.sampled_from(known), INT32)
    raise AssertionError(f"no strategy for field type {kind}")


def messages(desc: descriptor.Descriptor, depth: int = 3) -> st.SearchStrategy[message.Message]:
    """Any message of type `desc`."""
    message_class: Any = message_factory.GetMessageClass(desc)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in desc.fields:
        value = _field_value(field, depth)
        if value is not None:
            fields[field.name] = value

    @st.composite
    def build(draw: st.DrawFn) -> message.Message:
        made = message_class()
        names = draw(st.lists(st.sampled_from(sorted(fields)), unique=True, max_size=len(fields))) if fields else []
        for name in names:
            _assign(made, desc.fields_by_name[name], draw(fields[name]))
        return made

    return build()


def _field_value(field: descriptor.FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key = _scalar(field.message_type.fields_by_name["key"])
        value_field = field.message_type.fields_by_name["value"]
        value = messages(value_field.message_type, depth - 1) if value_field.message_type else _scalar(value_field)
        return st.dictionaries(key, value, max_size=4)
    if field.message_type is not None:
        if depth <= 0:
            return None
        single = messages(field.message_type, depth - 1)
    else:
        single = _scalar(field)
    if field.is_repeated:
        return st.lists(single, max_size=4)
    return single


def _assign(made: message.Message, field: descriptor.FieldDescriptor, value: Any) -> None:
    target = getattr(made, field.name)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        for key, item in value.items():
            if isinstance(item, message.Message):
                target[key].CopyFrom(item)
            else:
                target[key] = item
    elif field.is_repeated:
        target.extend(value)
    elif field.message_type is not None:
        target.CopyFrom(value)
    else:
        setattr(made, field.name, value)
