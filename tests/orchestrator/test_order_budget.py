"""The account's order budget: exits and protective orders go first, entries take fair turns between bots,
and a send abandoned while it waits (the desk stopping) gives its turn on."""

from __future__ import annotations

import asyncio

import pytest

from traderagent.orchestrator.gate import NeverSent, OrderBudget, SendGate, SendsStopped


async def _queued(budget: OrderBudget, n: int) -> None:
    await asyncio.sleep(0)  # one loop pass: every new task runs up to its place in the queue
    assert budget.queued == n


async def test_exits_first_then_entries_in_fair_turns():
    budget, order, hold = OrderBudget(in_flight=1), [], asyncio.Event()

    async def send(bot: str, what: str, urgent: bool = False) -> None:
        async with budget.turn(bot, urgent=urgent):
            order.append(what)
            if what == "holder":
                await hold.wait()

    holder = asyncio.create_task(send("h", "holder"))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(send("a", f"a{i}")) for i in range(1, 4)]  # a's ladder queues first
    waiting += [asyncio.create_task(send("b", "b1")), asyncio.create_task(send("a", "a-stop", urgent=True))]
    await _queued(budget, 5)
    hold.set()
    await asyncio.gather(holder, *waiting)
    assert order == ["holder", "a-stop", "a1", "b1", "a2", "a3"]  # b waits one order of a's, not three


async def test_a_batch_costs_its_orders_in_the_fair_share():
    budget, order, hold = OrderBudget(in_flight=1), [], asyncio.Event()

    async def send(bot: str, cost: int) -> None:
        async with budget.turn(bot, cost):
            order.append(bot)
            if bot == "h":
                await hold.wait()

    holder = asyncio.create_task(send("h", 1))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(send("big", 9)), asyncio.create_task(send("big", 9))]
    waiting += [asyncio.create_task(send(f"s{i}", 1)) for i in range(3)]
    await _queued(budget, 5)
    hold.set()
    await asyncio.gather(holder, *waiting)
    assert order == ["h", "s0", "s1", "s2", "big", "big"]


async def test_a_send_abandoned_in_the_queue_passes_its_turn_on():
    gate, hold, sent = SendGate(), asyncio.Event(), []
    gate.budgets["linear"] = budget = OrderBudget(in_flight=1)

    async def call(name: str) -> str:
        gate.on_wire()  # as the client does, right before it writes the request
        sent.append(name)
        if name == "first":
            await hold.wait()
        return name

    first = asyncio.create_task(gate.send(lambda: call("first"), lane="linear", bot="a"))
    await asyncio.sleep(0)
    queued = asyncio.create_task(gate.send(lambda: call("queued"), lane="linear", bot="b"))
    await _queued(budget, 1)
    gate.close()  # the desk stops: the queued send never reaches the exchange
    hold.set()
    assert await first == "first"
    with pytest.raises(SendsStopped):
        await queued
    gate.reopen()
    assert await gate.send(lambda: call("later"), lane="linear", bot="b") == "later"
    assert sent == ["first", "later"]


async def test_a_request_written_from_a_task_of_its_own_is_checked_as_its_send():
    """A batch's requests go out from tasks the client makes (one per chunk): the gate still knows their
    bot (fenced: refused) and their deadline (too late: refused), and counts them on the wire."""
    gate, owned, late = SendGate(), {"bot": True}, [False]
    gate.holds = lambda bot: owned[bot]

    async def batch() -> list[str]:
        async def chunk() -> str:
            gate.on_wire()
            return "sent"
        return list(await asyncio.gather(chunk(), chunk()))

    assert await gate.send(batch, bot="bot", late=lambda: late[0]) == ["sent", "sent"]
    assert gate.sent == 2
    late[0] = True
    with pytest.raises(NeverSent, match="decided too long ago"):  # none of its requests written
        await gate.send(batch, bot="bot", late=lambda: late[0])

    async def fenced_batch() -> list[str]:
        owned["bot"] = False  # admitted, then fenced before its requests are written
        return await batch()

    with pytest.raises(SendsStopped, match="no longer owns bot"):
        await gate.send(fenced_batch, bot="bot")
    assert gate.sent == 2


async def test_a_stopped_send_writes_no_further_request_and_tells_whether_one_was_written():
    """A stop-all (the gate closes, the bots stop, it reopens) while a batch's first chunk is on the wire and
    its second waits at the client's rate limiter: the second is not written, not even after the reopen,
    and the send is uncertain (SendsStopped: its first chunk may rest on the exchange). A send refused
    before any request of it was written is NeverSent: its orders cannot reach the exchange."""
    gate, wired, limiter = SendGate(), asyncio.Event(), asyncio.Event()

    async def batch() -> list[str]:
        async def chunk(waits: bool) -> str:
            if waits:
                await limiter.wait()
            gate.on_wire()
            wired.set()
            return "sent"
        return list(await asyncio.gather(chunk(False), chunk(True)))

    send = asyncio.create_task(gate.send(batch, bot="bot"))
    await asyncio.wait_for(wired.wait(), 30)
    gate.close()
    gate.reopen()
    limiter.set()
    with pytest.raises(SendsStopped) as stopped:
        await send
    assert type(stopped.value) is SendsStopped and gate.sent == 1
    gate.close()
    with pytest.raises(NeverSent):
        await gate.send(batch, bot="bot")
    assert gate.sent == 1
