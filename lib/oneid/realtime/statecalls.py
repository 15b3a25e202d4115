"""Many ``getValue`` / ``updateValue`` calls of a map state in a few socket round trips.

On Spark 4.1.1 each call of the Python state API writes one request to the executor's state
server and waits for its answer: two round trips per person and micro-batch, most of the
stateful step's time (a context switch each way, slow on a loaded machine). The server reads
requests from its socket one after another, so the same requests can be written back to back
and their answers read afterwards: :class:`PipelinedMapState` sends up to ``chunk`` requests per
flush, then reads their answers in order. The requests and answers are byte for byte those of
``MapState.getValue`` / ``updateValue`` (built from pyspark's own protobuf messages and
serialisers); where those internals are missing (another pyspark), it falls back to the
public calls one by one.

A chunk's requests (person keys: tens of bytes each) fit in the socket buffers, so writing them
before reading never blocks; ``updateValue`` answers are a status code.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence

from pyspark.errors import PySparkRuntimeError
from pyspark.serializers import pickle_protocol, write_int
from pyspark.sql.types import StringType

CHUNK = 256


class PipelinedMapState:
    """``get_values`` / ``update_values`` of a ``MapState`` (the public one-call API too)."""

    def __init__(self, state, chunk: int = CHUNK) -> None:
        self.state = state
        self.chunk = chunk
        self._client = getattr(state, "_mapStateClient", None)
        self._name = getattr(state, "_stateName", None)
        self._api = getattr(self._client, "_stateful_processor_api_client", None)
        needed = ("sockfile", "_serialize_to_bytes", "_deserialize_from_bytes")
        self.pipelined = (
            self._api is not None
            and self._name is not None
            and all(hasattr(self._api, n) for n in (*needed, "_receive_proto_message"))
            and hasattr(self._client, "user_key_schema")
            and hasattr(self._client, "value_schema")
        )
        # rows of string fields only: pyspark's serialiser (a Row, its internal form, then
        # cloudpickle) gives the pickle of the tuple itself, which is cheaper to make here
        self._plain = self.pipelined and all(
            isinstance(f.dataType, StringType)
            for schema in (self._client.user_key_schema, self._client.value_schema)
            for f in schema.fields
        )

    def get_values(self, keys: Sequence[tuple]) -> list[tuple | None]:
        """The value of each key (None where the map has none)."""
        if not self.pipelined:
            return [self.state.getValue(k) for k in keys]
        from pyspark.sql.streaming.proto import StateMessage_pb2 as msg

        out: list[tuple | None] = []
        for start in range(0, len(keys), self.chunk):
            part = keys[start : start + self.chunk]
            self._send(
                msg.MapStateCall(
                    stateName=self._name,
                    getValue=msg.GetValue(userKey=self._key(k)),
                )
                for k in part
            )
            for _ in part:
                status, error, value = self._api._receive_proto_message()
                if status != 0:
                    raise PySparkRuntimeError(f"Error getting value: {error}")
                out.append(self._api._deserialize_from_bytes(value) if len(value) else None)
        return out

    def update_values(self, items: Sequence[tuple[tuple, tuple]]) -> None:
        """Set each ``(key, value)``."""
        if not self.pipelined:
            for key, value in items:
                self.state.updateValue(key, value)
            return
        from pyspark.sql.streaming.proto import StateMessage_pb2 as msg

        schema = self._client.value_schema
        for start in range(0, len(items), self.chunk):
            part = items[start : start + self.chunk]
            self._send(
                msg.MapStateCall(
                    stateName=self._name,
                    updateValue=msg.UpdateValue(userKey=self._key(k), value=self._row(schema, v)),
                )
                for k, v in part
            )
            errors = [self._api._receive_proto_message() for _ in part]
            for status, error, _ in errors:
                if status != 0:
                    raise PySparkRuntimeError(f"Error updating map state value: {error}")

    def _key(self, key: tuple) -> bytes:
        return self._row(self._client.user_key_schema, key)

    def _row(self, schema, values: tuple) -> bytes:
        if self._plain and all(isinstance(v, str) for v in values):
            return pickle.dumps(tuple(values), pickle_protocol)
        return self._api._serialize_to_bytes(schema, values)

    def _send(self, calls) -> None:
        """Write the requests back to back (pyspark's framing: version 0, length, message),
        one flush."""
        from pyspark.sql.streaming.proto import StateMessage_pb2 as msg

        out = self._api.sockfile
        for call in calls:
            request = msg.StateRequest(
                stateVariableRequest=msg.StateVariableRequest(mapStateCall=call)
            )
            data = request.SerializeToString()
            write_int(0, out)
            write_int(len(data), out)
            out.write(data)
        out.flush()
