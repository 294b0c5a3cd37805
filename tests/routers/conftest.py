"""Fixtures for the router tests."""

from __future__ import annotations

import pytest
from tests.routers.router_fakes import TopicEmbedder, topic_dataset

from polyroute.routing_eval.dataset import RoutingDataset


@pytest.fixture
def embedder() -> TopicEmbedder:
    return TopicEmbedder()


@pytest.fixture
def dataset() -> RoutingDataset:
    return topic_dataset()
