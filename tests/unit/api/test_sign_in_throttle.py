"""Guessing passwords: each failure is logged (user and address, never the password) and counted;
after a few, the user and the address must wait, longer each time, even with the right password;
a flood of sign-ins checks only a few passwords at a time."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
from argon2 import PasswordHasher

from api.throttle import SignInThrottle
from tests.unit.api.conftest import PASSWORD, Api, make_api, served
from tests.unit.api.test_operations import samples

LOGIN = "/login"
CHEAP_HASH = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)


def cheaply_checked(**settings) -> Api:
    """The API with its users' passwords hashed cheaply: a test of many sign-ins stays quick."""
    return make_api(api_users=[{"name": "ana", "password_hash": CHEAP_HASH, "role": "clerk"},
                               {"name": "victor", "password_hash": CHEAP_HASH, "role": "viewer"}], **settings)


def test_a_failed_sign_in_is_logged_with_user_and_address_but_never_the_password(api, caplog):
    with caplog.at_level(logging.WARNING, logger="api.auth"):
        api.client.post(LOGIN, data={"username": "ana", "password": "hunter2-guess"})
        api.client.get("/api/me", auth=("mallory", "basic-guess"))
    assert [r.getMessage() for r in caplog.records] == ["sign-in failed: user 'ana' from testclient",
                                                        "sign-in failed: user 'mallory' from testclient"]
    assert "guess" not in caplog.text


def test_after_the_free_failures_even_the_right_password_waits_and_the_wait_doubles():
    api = make_api(api_sign_in_free_failures=3)
    now = [1000.0]
    api.context.auth.throttle.clock = lambda: now[0]
    for _ in range(3):
        assert api.client.post(LOGIN, data={"username": "ana", "password": "wrong"}).status_code == 401
    refused = api.client.post(LOGIN, data={"username": "ana", "password": PASSWORD}, follow_redirects=False)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    basic = api.client.get("/api/me", auth=("ana", PASSWORD))
    assert basic.status_code == 429 and basic.headers["Retry-After"] == "1"
    now[0] += 1.0
    assert api.client.post(LOGIN, data={"username": "ana", "password": "wrong"}).status_code == 401
    now[0] += 1.5
    assert api.client.get("/api/me", auth=("ana", PASSWORD)).status_code == 429  # now 2 s
    now[0] += 0.5
    assert api.client.get("/api/me", auth=("ana", PASSWORD)).status_code == 200


def test_one_address_guessing_many_users_is_held_back_and_other_addresses_are_not():
    api = make_api(api_sign_in_free_failures=3)
    for name in ("ana", "victor", "nobody"):
        api.client.get("/api/me", auth=(name, "wrong"))
    assert api.client.get("/api/me", auth=("someone", "wrong")).status_code == 429
    elsewhere = make_api(client_address=("198.51.100.4", 1), api_sign_in_free_failures=3)
    assert elsewhere.client.get("/api/me", auth=("victor", PASSWORD)).status_code == 200


def test_a_stranger_guessing_at_a_clerks_name_keeps_out_no_address_the_clerk_signed_in_from():
    """Failures counted per user, from any address, held the clerk's own sign-in back, right
    password and all: one failed guess every 15 minutes kept a named clerk out for good."""
    from fastapi.testclient import TestClient

    app = make_api(api_sign_in_free_failures=3).client.app
    office, stranger, elsewhere = (TestClient(app, client=(address, 1))
                                   for address in ("198.51.100.7", "203.0.113.9", "192.0.2.50"))
    assert office.post(LOGIN, data={"username": "ana", "password": PASSWORD},
                       follow_redirects=False).status_code == 303
    for _ in range(3):
        assert stranger.post(LOGIN, data={"username": "ana", "password": "wrong"}).status_code == 401
    assert stranger.post(LOGIN, data={"username": "ana", "password": PASSWORD}).status_code == 429
    # From an address the clerk never signed in from, the user's count still holds it back.
    assert elsewhere.post(LOGIN, data={"username": "ana", "password": PASSWORD}).status_code == 429
    assert office.post(LOGIN, data={"username": "ana", "password": PASSWORD}, follow_redirects=False).status_code == 303


def test_a_clerks_address_shared_with_a_guesser_gives_the_guesser_no_more_tries():
    """From an address the clerk signed in from (an office's NAT), only the address's count held a
    sign-in back, and a flood from other addresses pushed that count out: the guesser began again."""
    from fastapi.testclient import TestClient

    api = make_api(api_sign_in_free_failures=3)
    api.context.auth.throttle.capacity = 5
    api.context.auth.throttle.clock = lambda: 1000.0  # no wait runs out meanwhile
    app = api.client.app
    office = TestClient(app, client=("198.51.100.7", 1))
    assert office.get("/api/me", auth=("ana", PASSWORD)).status_code == 200
    answers = []
    for round_ in range(3):
        answers += [office.get("/api/me", auth=("ana", f"guess{round_}-{n}")).status_code for n in range(4)]
        for n in range(8):  # other addresses, other names: the oldest counts go
            TestClient(app, client=(f"192.0.2.{10 * round_ + n}", 1)).get("/api/me", auth=(f"nobody{n}", "x"))
    assert answers.count(401) == 3  # the free failures, and no more


def test_the_clerks_own_sign_ins_do_not_clear_what_guesses_from_elsewhere_counted():
    """Each of the clerk's sign-ins from the office cleared the user's count, the one that holds
    back guesses from ever new addresses: with a script signing in every minute, a botnet had 600
    guesses an hour at the clerk's password instead of 17."""
    from fastapi.testclient import TestClient

    api = make_api(api_sign_in_free_failures=3)
    api.context.auth.throttle.clock = lambda: 1000.0
    app = api.client.app
    office = TestClient(app, client=("198.51.100.7", 1))
    assert office.post(LOGIN, data={"username": "ana", "password": PASSWORD}, follow_redirects=False).status_code == 303
    answers = []
    for n in range(6):
        answers.append(TestClient(app, client=(f"192.0.2.{n}", 1)).post(
            LOGIN, data={"username": "ana", "password": f"guess{n}"}).status_code)
        assert office.post(LOGIN, data={"username": "ana", "password": PASSWORD},
                           follow_redirects=False).status_code == 303
    assert answers == [401, 401, 401, 429, 429, 429]


def test_a_guesser_at_a_clerks_address_is_held_back_by_the_address_for_every_name_not_signed_in_there():
    """From an address a user signed in from, the address's count no longer held: a guesser behind
    the office's NAT had fresh tries at each name. Those signed in from there are held back by
    their own counts there (test_a_script_failing_at_the_office_does_not_keep_out_a_clerk_who_signs_in_there)."""
    from fastapi.testclient import TestClient

    api = make_api(api_sign_in_free_failures=3)
    api.context.auth.throttle.clock = lambda: 1000.0
    office = TestClient(api.client.app, client=("198.51.100.7", 1))
    for name in ("ana", "victor"):
        assert office.post(LOGIN, data={"username": name, "password": PASSWORD},
                           follow_redirects=False).status_code == 303
    answers = {name: [office.post(LOGIN, data={"username": name, "password": "wrong"}).status_code
                      for _ in range(2)] for name in ("ana", "victor", "bob")}
    assert answers == {"ana": [401, 401], "victor": [401, 401], "bob": [429, 429]}


def test_a_script_failing_at_the_office_does_not_keep_out_a_clerk_who_signs_in_there():
    """A script behind the office's NAT kept trying a stale password for a name never signed in from
    there: the address's wait climbed to 900 s, and the clerk who signs in from the office, right
    password and all, got a 429 all day."""
    from fastapi.testclient import TestClient

    api = cheaply_checked(api_sign_in_free_failures=3)
    api.context.auth.throttle.clock = lambda: 1000.0  # no wait runs out meanwhile
    office = TestClient(api.client.app, client=("198.51.100.7", 1))
    assert office.post(LOGIN, data={"username": "ana", "password": PASSWORD}, follow_redirects=False).status_code == 303
    script = [office.get("/api/me", auth=("victor", "last-years-password")).status_code for _ in range(5)]
    assert script == [401, 401, 401, 429, 429]
    assert office.post(LOGIN, data={"username": "ana", "password": PASSWORD}, follow_redirects=False).status_code == 303
    assert office.get("/api/me", auth=("bob", "x")).status_code == 429  # never signed in from there


def test_behind_a_clerks_nat_a_wrong_password_tells_no_name_from_another():
    """From an address a user signed in from, the user's count over all addresses did not hold: a
    401 there, where a name no one has got a 429, told which names sign in there."""
    from fastapi.testclient import TestClient

    api = make_api(api_sign_in_free_failures=3)
    api.context.auth.throttle.clock = lambda: 1000.0
    app = api.client.app
    office = TestClient(app, client=("198.51.100.7", 1))
    assert office.post(LOGIN, data={"username": "ana", "password": PASSWORD}, follow_redirects=False).status_code == 303
    for name in ("ana", "bob"):
        for n in range(3):
            TestClient(app, client=(f"192.0.2.{n}", 1)).post(LOGIN, data={"username": name, "password": "x"})
    said = {name: office.post(LOGIN, data={"username": name, "password": "wrong"}) for name in ("ana", "bob")}
    assert [(r.status_code, r.headers.get("Retry-After")) for r in said.values()] == [(429, "1"), (429, "1")]
    assert office.post(LOGIN, data={"username": "ana", "password": PASSWORD}, follow_redirects=False).status_code == 303


def test_a_flood_of_guesses_does_not_push_out_what_a_name_no_one_has_counted():
    """Counts of names no one has were pushed out by a flood, users' never: after one, such a name
    answered 401 again and a user's 429, which told the names apart."""
    from fastapi.testclient import TestClient

    api = make_api(api_sign_in_free_failures=3)
    throttle = api.context.auth.throttle
    throttle.clock, throttle.capacity = (lambda: 1000.0), 40
    app = api.client.app
    for name in ("victor", "bob"):
        for n in range(3):
            TestClient(app, client=(f"192.0.2.{n}", 1)).post(LOGIN, data={"username": name, "password": "x"})
    for n in range(60):  # each from a /64 of its own
        TestClient(app, client=(f"2001:db8:0:{n:x}::1", 1)).post(LOGIN, data={"username": f"flood{n}", "password": "x"})
    fresh = TestClient(app, client=("203.0.113.50", 1))
    assert [fresh.post(LOGIN, data={"username": name, "password": "x"}).status_code
            for name in ("victor", "bob")] == [429, 429]


def test_an_ipv4_client_heard_on_an_ipv6_socket_is_counted_by_its_own_address():
    """An API on "::" hears IPv4 clients as ::ffff:a.b.c.d: counted by the /64, all were one."""
    from api.throttle import address_key

    assert address_key("::ffff:203.0.113.7") == address_key("203.0.113.7") == "address:203.0.113.7"
    assert address_key("::ffff:203.0.113.7") != address_key("::ffff:198.51.100.1")


def test_a_failure_counts_at_the_address_as_it_stands_once_the_password_was_checked():
    """Keys made before the check: a sign-in meanwhile that pushed the address out of the user's
    last 16 left a count at an address no longer known, kept for good."""
    import asyncio

    from api.auth import SignInRefused

    api = make_api()
    auth = api.context.auth
    assert asyncio.run(auth.check_password("victor", PASSWORD, "198.51.100.7")).name == "victor"
    verify = auth._verify

    def meanwhile(name, password):
        auth._signed_in_from[name].clear()  # the user signed in from 16 other addresses
        return verify(name, password)

    auth._verify = meanwhile
    try:
        asyncio.run(auth.check_password("victor", "wrong", "198.51.100.7"))
    except SignInRefused as refused:
        assert refused.status == 401
    assert not [key for key in auth.throttle._failures if key.startswith("user:victor@")]


def test_a_basic_password_taken_again_without_a_check_is_still_held_back_with_its_user():
    """Answered from what passed before, a guesser held back could still try passwords: a wrong one
    was a 429, the right one a 200."""
    from fastapi.testclient import TestClient

    app = make_api(api_sign_in_free_failures=3).client.app
    clerk, guesser = TestClient(app, client=("198.51.100.7", 1)), TestClient(app, client=("203.0.113.9", 1))
    assert clerk.get("/api/me", auth=("ana", PASSWORD)).status_code == 200
    for _ in range(3):
        assert guesser.get("/api/me", auth=("ana", "wrong")).status_code == 401
    assert guesser.get("/api/me", auth=("ana", PASSWORD)).status_code == 429
    assert clerk.get("/api/me", auth=("ana", PASSWORD)).status_code == 200  # from where the clerk signs in


def test_a_basic_password_that_passed_is_not_checked_again_for_a_minute():
    """Each HTTP Basic request was an argon2 check in the slots sign-ins wait for: one client's
    steady requests made everyone else's sign-in a 503."""
    api = make_api()
    auth = api.context.auth
    verify, checked = auth._verify, []

    def counted(name, password):
        checked.append(name)
        return verify(name, password)

    auth._verify = counted
    for _ in range(5):
        assert api.client.get("/api/me", auth=("ana", PASSWORD)).status_code == 200
    assert api.client.get("/api/me", auth=("ana", "wrong")).status_code == 401
    assert api.client.get("/api/me", auth=("victor", PASSWORD)).status_code == 200
    assert checked == ["ana", "ana", "victor"]


def test_one_user_guessed_from_many_addresses_is_held_back():
    api = make_api(api_sign_in_free_failures=3)
    throttle = api.context.auth.throttle
    for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        throttle.failed(f"address:{address}", "user:ana")
    assert api.client.get("/api/me", auth=("ana", PASSWORD)).status_code == 429
    assert api.client.get("/api/me", auth=("victor", PASSWORD)).status_code == 200


def test_a_name_no_one_has_is_held_back_as_a_users_is_and_tells_no_one_which_names_exist():
    """Guessed from ever new addresses, a real name was answered 429 and an unknown one 401 for good:
    the difference listed AP's user names."""
    api = make_api(client_address=("10.0.0.7", 4000), api_trusted_proxies=["10.0.0.7"], api_sign_in_free_failures=2)
    answers = {}
    for name in ("ana", "nobody"):
        answers[name] = [api.client.get("/api/me", auth=(name, "wrong"),
                                        headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code
                         for n in range(4)]
    assert answers["ana"] == answers["nobody"] == [401, 401, 429, 429]


def test_an_ipv6_address_is_counted_by_its_64_and_any_address_however_written():
    """Each address of a home line's /64, or written with its port, was a count of its own from zero."""
    api = make_api(client_address=("10.0.0.7", 4000), api_trusted_proxies=["10.0.0.7"],
                   api_sign_in_free_failures=2)
    names = iter(f"guess-{n}" for n in range(100))
    for hop in ("2001:db8:1:2::1", "[2001:db8:1:2::2]:443"):
        assert api.client.get("/api/me", auth=(next(names), "x"), headers={"X-Forwarded-For": hop}).status_code == 401
    assert api.client.get("/api/me", auth=(next(names), "x"),
                          headers={"X-Forwarded-For": "2001:db8:1:2:ffff::9"}).status_code == 429
    for hop in ("203.0.113.7:40000", "::ffff:203.0.113.7"):
        assert api.client.get("/api/me", auth=(next(names), "x"), headers={"X-Forwarded-For": hop}).status_code == 401
    assert api.client.get("/api/me", auth=(next(names), "x"),
                          headers={"X-Forwarded-For": "203.0.113.7"}).status_code == 429
    assert api.client.get("/api/me", auth=(next(names), "x"),
                          headers={"X-Forwarded-For": "2001:db8:1:3::1"}).status_code == 401  # another line


def test_failures_are_counted_for_prometheus(api):
    api.client.post(LOGIN, data={"username": "ana", "password": "wrong"})
    api.client.get("/api/me", auth=("ana", "wrong"))
    found = samples(api)
    assert found[("invoice_automation_api_sign_in_failures_total", (("reason", "wrong_password"),))] == 2


def test_a_flood_of_sign_ins_checks_only_a_few_passwords_at_once():
    """And strangers (here names no one has) one fewer: the other check stays for ana, who has
    signed in from this address."""
    api = cheaply_checked(api_password_checks_at_once=2, api_sign_in_free_failures=100)
    auth = api.context.auth
    verify, running, most = auth._verify, Counter[str](), Counter[str]()
    lock = threading.Lock()

    def counted(name, password):
        who = "ana" if name == "ana" else "stranger"
        with lock:
            running[who] += 1
            most[who], most["all"] = max(most[who], running[who]), max(most["all"], running.total())
        try:
            return verify(name, password)
        finally:
            with lock:
                running[who] -= 1

    auth._verify = counted
    with served(api) as url, ThreadPoolExecutor(20) as pool:
        assert httpx.get(f"{url}/api/me", auth=("ana", PASSWORD), timeout=60).status_code == 200

        def guess(i: int) -> int:
            return httpx.get(f"{url}/api/me", auth=("ana" if i % 2 else f"user{i}", "wrong"), timeout=60).status_code

        answers = list(pool.map(guess, range(20)))
    assert most["all"] == 2 and most["stranger"] == 1
    assert set(answers) <= {401, 503} and 401 in answers


def test_strangers_guessing_from_everywhere_leave_a_check_for_a_clerk_at_an_address_she_signed_in_from():
    """Guesses at ever new names from ever new /64s pass the throttle for a good while (each has its
    free failures): they kept both checks busy, and the clerk at her usual desk, right password and
    all, waited API_PASSWORD_CHECK_WAIT_SECONDS for a 503."""
    import asyncio

    auth = cheaply_checked(api_password_checks_at_once=2, api_password_check_wait_seconds=1).context.auth
    verify, checking_a_stranger, flood_over = auth._verify, threading.Semaphore(0), threading.Event()

    def checked(name, password):
        if name == "ana":
            return verify(name, password)
        checking_a_stranger.release()
        flood_over.wait(10)  # a check that takes as long as the flood lasts
        return None

    auth._verify = checked

    async def flood_then_sign_in():
        assert (await auth.check_password("ana", PASSWORD, "198.51.100.7")).name == "ana"
        guesses = [asyncio.create_task(auth.check_password(f"guess{n}", "x", f"2001:db8:1:{n:x}::1"))
                   for n in range(10)]
        await asyncio.to_thread(checking_a_stranger.acquire)
        try:
            return await auth.check_password("ana", PASSWORD, "198.51.100.7")
        finally:
            flood_over.set()
            await asyncio.gather(*guesses, return_exceptions=True)

    assert asyncio.run(flood_then_sign_in()).name == "ana"


def test_a_burst_sent_at_once_checks_no_more_passwords_than_the_free_failures_and_the_checks_at_once():
    """All of a burst passes the first look before any of its failures is counted: each is looked
    at again once it may check. The wait is long enough that no burst outlasts it."""
    api = make_api(api_password_checks_at_once=2, api_sign_in_free_failures=3, api_sign_in_backoff_seconds=60)
    auth = api.context.auth
    verify, checked = auth._verify, [0]

    def counted(name, password):
        checked[0] += 1
        return verify(name, password)

    auth._verify = counted
    with served(api) as url, ThreadPoolExecutor(20) as pool:
        def guess(i: int) -> int:
            return httpx.get(f"{url}/api/me", auth=("ana", f"guess{i}"), timeout=60).status_code

        answers = list(pool.map(guess, range(40)))
    assert checked[0] <= 3 + 2 - 1 and answers.count(401) == checked[0]
    assert set(answers) <= {401, 429, 503} and 429 in answers


def test_the_throttle_forgets_the_oldest_keys_beyond_its_capacity():
    throttle = SignInThrottle(1, 1.0, 10.0, clock=lambda: 0.0, capacity=2)
    throttle.failed("address:a")
    throttle.failed("address:b", "address:c")
    assert throttle.wait_for("address:a") == 0 and throttle.wait_for("address:c") == 1.0


def test_a_users_count_is_never_pushed_out_by_guesses_from_many_addresses():
    """Held back on ana, a guesser with a block of IPv6 addresses failed with unknown names from
    each, until ana's count was the oldest key and went: then ana's guessing started from zero."""
    throttle = SignInThrottle(1, 1.0, 10.0, clock=lambda: 0.0, capacity=2)
    for _ in range(5):
        throttle.failed("address:a", "user:ana")
    for n in range(50):  # a /64 holds more addresses than any capacity
        throttle.failed(f"address:{n}")
    assert throttle.wait_for("user:ana") == 10.0 and throttle.wait_for("address:a") == 0


def test_a_user_guessed_at_for_days_waits_the_longest_wait_and_no_more():
    """2 ** 1,024 seconds overflowed past some 1,029 failures (ten days of guessing, each wait
    waited out): every sign-in of the user, the right password too, was a 500 until a restart."""
    now = [0.0]
    throttle = SignInThrottle(5, 1.0, 900.0, clock=lambda: now[0])
    for _ in range(1_100):
        throttle.failed("user:ana")
        now[0] += 900.0
    now[0] -= 900.0
    assert throttle.wait_for("user:ana") == 900.0
