"""Each model's runtime config, in three layers: the stack file's `[models.X]` table <
keys published by the model's own units < keys set through the control API.

Invariants:
- A model's keys are only ever read merged (`keys`), and only for that model: nothing of
  one model is reachable from another's.
- Every change keeps the `Redactor` up to date, so a secret value set a moment ago is
  already masked in the next output line.
- A change can be undone exactly: `snapshot` / `restore` cover the two mutable layers
  (the file layer changes only with a reload, which has its own rollback).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from supervisor.secrets import Redactor, is_secret


@dataclass(frozen=True)
class KeyLayers:
    """A model's published and API layers at one moment."""

    published: Mapping[str, str]
    api: Mapping[str, str]


class ModelKeys:
    def __init__(
        self,
        file_models: Mapping[str, Mapping[str, str]],
        base: Iterable[tuple[str, str]] = (),
        redactor: Redactor | None = None,
    ) -> None:
        self.redactor = redactor or Redactor()
        self.file: dict[str, dict[str, str]] = {m: dict(k) for m, k in file_models.items()}
        self._published: dict[str, dict[str, str]] = {}
        self._api: dict[str, dict[str, str]] = {}
        self._base = list(base)
        self._refresh()

    def keys(self, model: str) -> dict[str, str]:
        """The model's merged runtime config: file < published < API."""
        return {
            **self.file.get(model, {}),
            **self._published.get(model, {}),
            **self._api.get(model, {}),
        }

    def snapshot(self, model: str) -> KeyLayers:
        return KeyLayers(dict(self._published.get(model, {})), dict(self._api.get(model, {})))

    def restore(self, model: str, layers: KeyLayers) -> list[str]:
        """Put the model's mutable layers back as they were; the keys that changed."""
        before = self.keys(model)
        self._published[model] = dict(layers.published)
        self._api[model] = dict(layers.api)
        return self._changed(model, before)

    def change(self, model: str, set_: Mapping[str, str], unset: Iterable[str] = ()) -> list[str]:
        """Set keys in the API layer; unset removes a key from the API and published
        layers (a file value shows through again). Returns the keys whose value changed."""
        before = self.keys(model)
        api = self._api.setdefault(model, {})
        api.update(set_)
        for key in unset:
            api.pop(key, None)
            self._published.get(model, {}).pop(key, None)
        return self._changed(model, before)

    def publish(self, model: str, published: Mapping[str, str]) -> list[str]:
        before = self.keys(model)
        self._published.setdefault(model, {}).update(published)
        return self._changed(model, before)

    def forget(self, model: str) -> None:
        """Drop the model's API and published keys (its file keys stay with the file)."""
        self._published.pop(model, None)
        self._api.pop(model, None)
        self._refresh()

    def set_file(
        self, file_models: Mapping[str, Mapping[str, str]], base: Iterable[tuple[str, str]]
    ) -> None:
        """A reloaded stack file's `[models.*]` tables and base variables."""
        self.file = {m: dict(k) for m, k in file_models.items()}
        self._base = list(base)
        self._refresh()

    def _changed(self, model: str, before: Mapping[str, str]) -> list[str]:
        after = self.keys(model)
        changed = sorted(k for k in {*before, *after} if before.get(k) != after.get(k))
        if any(is_secret(k) for k in changed):  # else the secret values are as they were
            self._refresh()
        return changed

    def _refresh(self) -> None:
        pairs = list(self._base)
        for layer in (self.file, self._published, self._api):
            for keys in layer.values():
                pairs.extend(keys.items())
        self.redactor.update(pairs)
