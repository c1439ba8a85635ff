"""The local Delta target, by concern: ``target`` (the interface), ``bronze`` (data files),
``commit`` (staging and overwrite commits), ``scan`` (reading tables back) and ``errors``."""

from service.lakehouse.delta.target import DeltaTarget

__all__ = ["DeltaTarget"]
