"""Stop signals: at once outside training, at the next step end inside it, and handed on to submitit afterwards."""

from __future__ import annotations

import os
import signal
import time

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from medtune.preemption import StopRequest, hand_on, preemptible
from medtune.run_dir import Preempted
from medtune.training import StopOnSignal


def test_a_stop_signal_outside_training_stops_at_once_and_the_old_handler_comes_back():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Preempted) as stopped, preemptible():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises long before this ends
    assert stopped.value.signum == signal.SIGTERM and "SIGTERM" in str(stopped.value)
    assert signal.getsignal(signal.SIGTERM) is before


def test_during_training_the_signal_waits_for_the_step_end_which_saves_and_stops(tmp_path):
    request = StopRequest()
    callback, control = StopOnSignal(request), TrainerControl()
    args, state = TrainingArguments(output_dir=str(tmp_path), report_to=[]), TrainerState()
    callback.on_train_begin(args, state, control)
    request.handle(signal.SIGUSR2, None)  # no exception: the optimizer step in progress finishes
    assert request.signum == signal.SIGUSR2 and not control.should_save
    callback.on_step_end(args, state, control)
    assert control.should_save and control.should_training_stop


def test_the_signal_is_handed_on_to_the_handler_medtune_replaced():
    received = []
    error = Preempted("stopped at step 3", signal.SIGUSR2, lambda signum, frame: received.append(signum))
    hand_on(error)  # submitit's handler would requeue the job here
    assert received == [signal.SIGUSR2]
    hand_on(Preempted("no handler before medtune", signal.SIGTERM, signal.SIG_DFL))  # not callable: nothing to do
