"""The benchmark loop: ask every question to every model, grade, store, train on the results.

Suites (BIG-bench tasks, LLMRouter query files, your JSONL) give questions with references;
graders score answers; the runner asks through the provider pool and logs each answer at
once; the results file is a routing dataset for ``polyroute train``; the leaderboard reads it.
Suites and graders are registered in :data:`SUITES` and :data:`GRADERS` (entry-point groups
``polyroute.suites`` and ``polyroute.graders``).
"""

from __future__ import annotations

# Importing graders, judge and suites registers the built-in graders and suite loaders.
from polyroute.bench import graders as graders
from polyroute.bench import judge as judge
from polyroute.bench.costs import answer_cost_usd
from polyroute.bench.questions import BenchError, Grader, Question, Suite
from polyroute.bench.registry import GRADERS, SUITES, SuiteLoader
from polyroute.bench.results import Answer, AnswerLog, CostMeasure, build_rows, read_results
from polyroute.bench.runner import BenchRunner, RunSettings, RunSummary
from polyroute.bench.suites import default_data_dir, load_suite, load_suites

__all__ = [
    "GRADERS",
    "SUITES",
    "Answer",
    "AnswerLog",
    "BenchError",
    "BenchRunner",
    "CostMeasure",
    "Grader",
    "Question",
    "RunSettings",
    "RunSummary",
    "Suite",
    "SuiteLoader",
    "answer_cost_usd",
    "build_rows",
    "default_data_dir",
    "load_suite",
    "load_suites",
    "read_results",
]
