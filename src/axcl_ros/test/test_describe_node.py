"""describe node through real DDS: the Describe action (streamed deltas, header copied, the latest frame, cancel,
busy reject / queue one), the Ask service, narration, text-only mode, bad requests and lifecycle failures.

The model is a tiny random llama converted by ``convert-llm`` with a synthetic vision encoder of the right contract
(no vision-language weights are reachable here); its EOS list is emptied so generations run to their token limit.
"""

import json
import os
import shutil
import types

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS tests need the workspace: run through `make test`")
pytest.importorskip("axcl_msgs.action", reason="axcl_msgs not built: run through `make test`")

from action_msgs.msg import GoalStatus  # noqa: E402
from axcl_msgs.action import Describe  # noqa: E402
from axcl_msgs.msg import Description  # noqa: E402
from axcl_msgs.srv import Ask  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from axcl_ros.io.image import array_to_image_fields  # noqa: E402
from axcl_ros.models.llm.export_onnx import convert_checkpoint  # noqa: E402
from axcl_ros.models.llm.generate import LlmModel  # noqa: E402
from axcl_ros.nodes.describe import DescribeNode  # noqa: E402
from axcl_ros_testing.lifecycle_client import LifecycleClient  # noqa: E402
from axcl_ros_testing.llm_models import write_tiny_checkpoint, write_vision_encoder  # noqa: E402
from axcl_ros_testing.ros_graph import RosGraph  # noqa: E402

pytestmark = [pytest.mark.ros]
QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LONG = 6000  # tokens: a generation that runs until it is cancelled


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("describe")
    text = str(root / "text")
    convert_checkpoint(write_tiny_checkpoint(str(root / "hf"), "llama", layers=2), text, max_context=8192,
                       prefill_chunk=32)
    cfg = json.loads(open(os.path.join(text, "config.json")).read())
    cfg["eos_ids"] = []
    open(os.path.join(text, "config.json"), "w").write(json.dumps(cfg))
    vlm = str(root / "vlm")
    shutil.copytree(text, vlm)
    cfg.update(image_token="<image>", image_prefix="<img>", image_suffix="</img>\n", n_image_tokens=16)
    open(os.path.join(vlm, "config.json"), "w").write(json.dumps(cfg))
    write_vision_encoder(os.path.join(vlm, "vision.onnx"), hidden=cfg["hidden_size"], n_tokens=16, size=32)
    return types.SimpleNamespace(text=text, vlm=vlm, root=root)


@pytest.fixture(scope="module")
def graph():
    with RosGraph(threads=8) as g:
        yield g


def _start(graph, name, folder, **params):
    overrides = [Parameter("model_dir", value=folder), Parameter("image_topic", value=f"/{name}/image"),
                 Parameter("input_qos", value="reliable")]
    overrides += [Parameter(k, value=v) for k, v in params.items()]
    node = graph.add(DescribeNode(name, context=graph.context, parameter_overrides=overrides))
    test = graph.node(f"{name}_test")
    lc = LifecycleClient(graph, test)
    assert lc.change(f"/{name}", "configure"), node.last_error
    assert lc.change(f"/{name}", "activate")
    ns = types.SimpleNamespace(node=node, test=test, lc=lc, name=name)
    ns.action = ActionClient(test, Describe, f"/{name}/describe")
    ns.ask = test.create_client(Ask, f"/{name}/ask")
    ns.images = test.create_publisher(Image, f"/{name}/image", QOS)
    assert ns.action.wait_for_server(timeout_sec=10)
    if node.model.has_vision:
        graph.wait_for(lambda: ns.images.get_subscription_count() > 0, 10, "the node's image subscription")
    return ns


@pytest.fixture(scope="module")
def vlm(graph, model_dirs):
    ns = _start(graph, "dn", model_dirs.vlm, busy_policy="reject")
    yield ns
    ns.lc.change("/dn", "deactivate")
    ns.lc.change("/dn", "cleanup")


def _image(rgb, sec=7, frame="cam_optical", encoding="rgb8"):
    msg = Image(**array_to_image_fields(rgb, encoding, data_as="array"))
    msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = sec, 123, frame
    return msg


def _send(graph, ns, goal, feedback=None):
    fut = ns.action.send_goal_async(goal, feedback_callback=feedback)
    graph.wait_for(fut.done, 10, "goal response")
    return fut.result()


def _result(graph, handle, timeout=60):
    fut = handle.get_result_async()
    graph.wait_for(fut.done, timeout, "goal result")
    return fut.result()


RGB = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)


def test_empty_image_before_any_frame_is_a_clear_failure(graph, vlm):
    handle = _send(graph, vlm, Describe.Goal(prompt="what is here?", max_new_tokens=4))
    res = _result(graph, handle)
    assert res.status == GoalStatus.STATUS_ABORTED and "no frame received" in res.result.error


def test_describe_streams_deltas_copies_the_header_and_matches_the_model(graph, vlm, model_dirs):
    deltas = []
    goal = Describe.Goal(image=_image(RGB), prompt="what is on the table?", max_new_tokens=12)
    handle = _send(graph, vlm, goal, lambda f: deltas.append(f.feedback))
    assert handle.accepted
    res = _result(graph, handle)
    assert res.status == GoalStatus.STATUS_SUCCEEDED and res.result.success, res.result.error
    d = res.result.description
    assert (d.header.stamp.sec, d.header.stamp.nanosec, d.header.frame_id) == (7, 123, "cam_optical")
    assert d.tokens_generated == 12 and d.stop_reason == "max_tokens" and d.image_encode_ms > 0
    assert d.time_to_first_token_ms > 0 and d.prompt == "what is on the table?"
    graph.wait_for(lambda: deltas and deltas[-1].tokens_generated == 12, 5, "last feedback")
    assert "".join(f.delta for f in deltas) == d.text
    direct = LlmModel(model_dirs.vlm)
    try:
        assert direct.generate("what is on the table?", image=RGB, max_new_tokens=12).text == d.text
    finally:
        direct.release()


def test_empty_image_describes_the_latest_frame(graph, vlm):
    vlm.images.publish(_image(RGB[::-1].copy(), sec=42, frame="cam_left"))
    graph.wait_for(lambda: vlm.node.counters["frames_received"] >= 1, 10, "a frame at the node")
    res = _result(graph, _send(graph, vlm, Describe.Goal(prompt="describe", max_new_tokens=3)))
    assert res.result.success and res.result.description.header.frame_id == "cam_left"
    assert res.result.description.header.stamp.sec == 42


@pytest.mark.parametrize("encoding,shape,dtype", [("16UC1", (30, 40), np.uint16), ("32FC1", (30, 40), np.float32)])
def test_images_that_are_not_colour_are_refused(graph, vlm, encoding, shape, dtype):
    goal = Describe.Goal(image=_image(np.zeros(shape, dtype), encoding=encoding), prompt="what?", max_new_tokens=3)
    res = _result(graph, _send(graph, vlm, goal))
    assert res.status == GoalStatus.STATUS_ABORTED and encoding in res.result.error


def test_malformed_image_empty_prompt_and_huge_prompt_are_refused(graph, vlm):
    bad = _image(RGB)
    bad.data = bad.data[:100]
    cases = [(Describe.Goal(image=bad, prompt="what?"), "malformed"),
             (Describe.Goal(image=_image(RGB), prompt="  "), "empty"),
             (Describe.Goal(text_only=True, prompt="word " * 3000), "context holds 8192")]
    for goal, words in cases:
        res = _result(graph, _send(graph, vlm, goal))
        assert res.status == GoalStatus.STATUS_ABORTED and words in res.result.error, res.result.error
    assert vlm.node.bad_inputs.total >= 3


def test_cancel_stops_generation_and_busy_node_rejects(graph, vlm):
    deltas = []
    handle = _send(graph, vlm, Describe.Goal(text_only=True, prompt="tell me a story", max_new_tokens=LONG),
                   lambda f: deltas.append(f.feedback))
    assert handle.accepted
    graph.wait_for(lambda: len(deltas) >= 2, 30, "streamed feedback")
    assert not _send(graph, vlm, Describe.Goal(text_only=True, prompt="and me?", max_new_tokens=2)).accepted
    busy = graph.call(vlm.ask, Ask.Request(text_only=True, prompt="quick?", max_new_tokens=2))
    assert not busy.success and "busy" in busy.error
    cancel = handle.cancel_goal_async()
    graph.wait_for(cancel.done, 10, "cancel response")
    res = _result(graph, handle)
    assert res.status == GoalStatus.STATUS_CANCELED
    d = res.result.description
    assert d.stop_reason == "cancelled" and 2 <= d.tokens_generated < LONG
    assert vlm.node.counters["rejected.busy"] >= 2
    ok = graph.call(vlm.ask, Ask.Request(text_only=True, prompt="quick?", max_new_tokens=2))
    assert ok.success and ok.description.tokens_generated == 2 and ok.description.header.frame_id == ""


def test_queue_policy_lets_one_goal_wait(graph, vlm):
    assert vlm.node.set_parameters([Parameter("busy_policy", value="queue")])[0].successful
    try:
        first_fb = []
        first = _send(graph, vlm, Describe.Goal(text_only=True, prompt="long", max_new_tokens=LONG),
                      lambda f: first_fb.append(f))
        graph.wait_for(lambda: first_fb, 30, "first goal running")
        second = _send(graph, vlm, Describe.Goal(text_only=True, prompt="next", max_new_tokens=3))
        third = _send(graph, vlm, Describe.Goal(text_only=True, prompt="too many", max_new_tokens=3))
        assert first.accepted and second.accepted and not third.accepted
        first.cancel_goal_async()
        assert _result(graph, first).status == GoalStatus.STATUS_CANCELED
        res = _result(graph, second)
        assert res.status == GoalStatus.STATUS_SUCCEEDED and res.result.description.tokens_generated == 3
    finally:
        vlm.node.set_parameters([Parameter("busy_policy", value="reject")])


def test_stop_strings_and_goal_sampling(graph, vlm):
    goal = Describe.Goal(text_only=True, prompt="hello", max_new_tokens=20, use_node_sampling=False)
    goal.sampling.temperature, goal.sampling.seed = 1.0, 11
    a = _result(graph, _send(graph, vlm, goal)).result.description
    b = _result(graph, _send(graph, vlm, goal)).result.description
    assert a.text == b.text and a.tokens_generated == 20  # seeded: repeatable
    goal.sampling.top_p = 0.0
    res = _result(graph, _send(graph, vlm, goal))
    assert res.status == GoalStatus.STATUS_ABORTED and "top_p" in res.result.error


def test_narration_publishes_the_latest_frame_with_its_header(graph, model_dirs):
    ns = _start(graph, "narrator", model_dirs.vlm, narration_period_s=0.2, narration_max_new_tokens=4)
    got = []
    ns.test.create_subscription(Description, "/description", got.append, QOS)
    try:
        sent = 0
        while not got and sent < 40:  # new frames until the subscription has matched and a narration arrives
            ns.images.publish(_image(RGB, sec=100 + sent, frame="cam_narr"))
            sent += 1
            try:
                graph.wait_for(lambda: got, 0.5, "a narration")
            except TimeoutError:
                pass
        assert got, dict(ns.node.counters)
        assert 100 <= got[0].header.stamp.sec < 100 + sent and got[0].header.frame_id == "cam_narr"
        assert got[0].tokens_generated == 4 and got[0].prompt == ns.node.param("narration_prompt")
        skipped = ns.node.counters["narrations_skipped_no_new_frame"]
        graph.wait_for(lambda: ns.node.counters["narrations_skipped_no_new_frame"] > skipped + 2, 10, "idle ticks")
        assert ns.node.counters["narrations_published"] <= sent  # a frame is narrated once
    finally:
        ns.lc.change("/narrator", "deactivate")
        ns.lc.change("/narrator", "cleanup")


def test_text_only_model_refuses_images_and_answers_text(graph, model_dirs, monkeypatch):
    import axcl_ros.nodes.describe as describe_module

    built = []
    real_model = describe_module.LlmModel

    def recording_model(*args, **kwargs):
        built.append(kwargs)
        return real_model(*args, **kwargs)

    monkeypatch.setattr(describe_module, "LlmModel", recording_model)
    ns = _start(graph, "textonly", model_dirs.text, threads=2, cpu_spinning=True)
    assert built and built[0]["threads"] == 2 and built[0]["spinning"] is True  # the thread budget reaches the model
    try:
        res = _result(graph, _send(graph, ns, Describe.Goal(image=_image(RGB), prompt="what?", max_new_tokens=2)))
        assert res.status == GoalStatus.STATUS_ABORTED and "no vision encoder" in res.result.error
        res = _result(graph, _send(graph, ns, Describe.Goal(prompt="hi", max_new_tokens=2)))
        assert res.result.success and res.result.description.image_encode_ms == 0
    finally:
        ns.lc.change("/textonly", "deactivate")
        ns.lc.change("/textonly", "cleanup")


def test_configure_fails_with_what_to_fix_for_a_missing_layer(graph, model_dirs):
    broken = str(model_dirs.root / "broken")
    shutil.copytree(model_dirs.text, broken)
    os.remove(os.path.join(broken, "llama_l1.onnx"))
    node = graph.add(DescribeNode("broken", context=graph.context,
                                  parameter_overrides=[Parameter("model_dir", value=broken)]))
    lc = LifecycleClient(graph, graph.node("broken_test"))
    assert not lc.change("/broken", "configure")
    assert "[1] are missing" in node.last_error
    assert lc.state("/broken") == "unconfigured"
    node.set_parameters([Parameter("model_dir", value=model_dirs.text)])
    assert lc.change("/broken", "configure") and lc.change("/broken", "cleanup")


def test_fifty_configure_cleanup_cycles_release_every_session(graph, model_dirs, monkeypatch):
    from axcl_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend

    loaded = []

    def recording(real):
        def load(self, *args, **kwargs):
            session = real(self, *args, **kwargs)
            loaded.append(session)
            return session
        return load

    monkeypatch.setattr(OnnxRuntimeBackend, "load", recording(OnnxRuntimeBackend.load))
    node = graph.add(DescribeNode("cycler", context=graph.context,
                                  parameter_overrides=[Parameter("model_dir", value=model_dirs.vlm)]))
    lc = LifecycleClient(graph, graph.node("cycler_test"))
    for _ in range(50):
        assert lc.change("/cycler", "configure"), node.last_error
        assert lc.change("/cycler", "cleanup")
    assert len(loaded) == 50 * 3  # the 2 layers chained in one session + post + vision encoder per cycle
    assert all(s._sess is None for s in loaded) and node.model is None


def test_deactivate_and_cleanup_during_a_generation(graph, model_dirs):
    ns = _start(graph, "stopper", model_dirs.text)
    fb = []
    handle = _send(graph, ns, Describe.Goal(prompt="go on", max_new_tokens=LONG), lambda f: fb.append(f))
    assert handle.accepted
    graph.wait_for(lambda: fb, 30, "generation running")
    assert ns.lc.change("/stopper", "deactivate")
    res = _result(graph, handle)
    assert res.status == GoalStatus.STATUS_ABORTED and "deactivated" in res.result.error
    assert res.result.description.stop_reason == "cancelled" and res.result.description.tokens_generated < LONG
    assert not _send(graph, ns, Describe.Goal(prompt="hi", max_new_tokens=2)).accepted  # inactive: rejected
    assert ns.lc.change("/stopper", "cleanup") and ns.node.model is None and ns.node.slots.outstanding == 0
    assert ns.lc.change("/stopper", "configure") and ns.lc.change("/stopper", "activate")
    res = _result(graph, _send(graph, ns, Describe.Goal(prompt="hi", max_new_tokens=2)))
    assert res.result.success
    ns.lc.change("/stopper", "deactivate")
    ns.lc.change("/stopper", "cleanup")


def test_card_backend_on_the_axcl_stub(graph, stub, tmp_path):
    """backend: axcl with AXERA's per-layer layout (tiny stub models): the action streams the answer the stub's
    state checks allow only for a correct card runner, the Ask service answers, cleanup frees every device object."""
    from axcl_ros_testing.axera_llm_stub import axera_llm_stub

    folder = axera_llm_stub(str(tmp_path / "card"), layers=3)
    ns = _start(graph, "card", folder.folder, backend="axcl", device="0")
    try:
        assert ns.node.model.files.backend == "axcl"
        deltas = []
        res = _result(graph, _send(graph, ns, Describe.Goal(prompt="what is on the table?", max_new_tokens=8),
                                   lambda f: deltas.append(f.feedback)))
        assert res.status == GoalStatus.STATUS_SUCCEEDED, res.result.error
        d = res.result.description
        assert d.text == " hey!" and d.stop_reason == "eos" and d.tokens_generated == 5
        graph.wait_for(lambda: "".join(f.delta for f in deltas) == d.text, 5, "streamed deltas")
        ok = graph.call(ns.ask, Ask.Request(text_only=True, prompt="and now?", max_new_tokens=2))
        assert ok.success and ok.description.text == " h"
        assert stub.counters()["outstanding_allocs"] > 0
    finally:
        ns.lc.change("/card", "deactivate")
        ns.lc.change("/card", "cleanup")
    c = stub.counters()
    assert c["outstanding_allocs"] == 0 and c["loaded_models"] == 0 and c["outstanding_ios"] == 0


def test_card_backend_cancel_and_fifty_cycles_leave_nothing_on_the_card(graph, stub, tmp_path):
    """Cancel mid-generation on the card, then 50 configure/cleanup cycles: every device allocation, IO set and
    model is freed, each exactly once (a second free would fail in the stub and show as Free calls > Malloc)."""
    from axcl_ros_testing.axera_llm_stub import axera_llm_stub

    text = "abcdefghijklmnopqrsuvwxyz0123456789"
    from tokenizers import Tokenizer

    folder = str(tmp_path / "slow")
    axera_llm_stub(folder, layers=2, delay_us=10000)
    seq = Tokenizer.from_file(os.path.join(folder, "tokenizer.json")).encode(text, add_special_tokens=False).ids
    axera_llm_stub(folder, layers=2, delay_us=10000, sequence=seq)
    ns = _start(graph, "cardcycle", folder, backend="axcl")
    deltas = []
    handle = _send(graph, ns, Describe.Goal(prompt="count", max_new_tokens=100), lambda f: deltas.append(f))
    assert handle.accepted
    graph.wait_for(lambda: len(deltas) >= 2, 30, "streamed feedback")
    cancel = handle.cancel_goal_async()
    graph.wait_for(cancel.done, 10, "cancel response")
    res = _result(graph, handle)
    assert res.status == GoalStatus.STATUS_CANCELED
    d = res.result.description
    assert d.stop_reason == "cancelled" and 2 <= d.tokens_generated < len(seq) and text.startswith(d.text)
    assert ns.lc.change("/cardcycle", "deactivate") and ns.lc.change("/cardcycle", "cleanup")
    for _ in range(50):
        assert ns.lc.change("/cardcycle", "configure"), ns.node.last_error
        assert ns.lc.change("/cardcycle", "cleanup")
    c = stub.counters()
    assert c["outstanding_allocs"] == 0 and c["loaded_models"] == 0 and c["outstanding_ios"] == 0
    assert c["outstanding_ioinfos"] == 0 and stub.calls("axclrtFree") == stub.calls("axclrtMalloc")
    assert stub.calls("axclrtEngineUnload") == stub.calls("axclrtEngineLoadFromFile") == 51 * 3
