"""Closed-form worked solutions for a few reasoning-gym generators (number theory, counting, strings).

Each solver takes a reasoning-gym entry (question, answer, metadata) and returns ``(steps, answer)``; it reads
the problem's parameters from ``metadata``, never the stored answer.
"""

from __future__ import annotations

import math
from typing import Any

Entry = dict[str, Any]


def gcd_steps(a: int, b: int) -> list[str]:
    steps = []
    while b:
        steps.append(f"{a} = {a // b} * {b} + {a % b}")
        a, b = b, a % b
    steps.append(f"The remainder is 0, so the GCD is {a}.")
    return steps


def solve_gcd(entry: Entry) -> tuple[list[str], str]:
    nums = [int(n) for n in entry["metadata"]["numbers"]]
    steps, g = [f"Use the Euclidean algorithm on {', '.join(map(str, nums))}."], nums[0]
    for n in nums[1:]:
        steps += gcd_steps(max(g, n), min(g, n))
        g = math.gcd(g, n)
    return steps, str(g)


def solve_lcm(entry: Entry) -> tuple[list[str], str]:
    nums = [int(n) for n in entry["metadata"]["numbers"]]
    steps, lcm = [f"lcm(a, b) = a * b / gcd(a, b); fold it over {', '.join(map(str, nums))}."], nums[0]
    for n in nums[1:]:
        g = math.gcd(lcm, n)
        steps.append(f"gcd({lcm}, {n}) = {g}, so lcm = {lcm} * {n} / {g} = {lcm * n // g}.")
        lcm = lcm * n // g
    return steps, str(lcm)


def solve_count_bits(entry: Entry) -> tuple[list[str], str]:
    n = int(entry["metadata"]["number"])
    binary = bin(n)[2:]
    return [f"{n} in binary is {binary}.", f"Counting the 1 digits gives {binary.count('1')}."], str(
        binary.count("1")
    )


def solve_prime_factorization(entry: Entry) -> tuple[list[str], str]:
    n = int(entry["metadata"]["number"])
    steps, factors, rest, p = [], [], n, 2
    while p * p <= rest:
        while rest % p == 0:
            steps.append(f"{rest} is divisible by {p}: {rest} / {p} = {rest // p}.")
            factors.append(p)
            rest //= p
        p += 1
    if rest > 1:
        steps.append(f"{rest} is prime.")
        factors.append(rest)
    return steps, " × ".join(map(str, factors))


def solve_leg_counting(entry: Entry) -> tuple[list[str], str]:
    from reasoning_gym.arithmetic.leg_counting import ANIMALS

    steps, total = [], 0
    for animal, count in entry["metadata"]["animals"].items():
        legs = ANIMALS[animal]
        total += legs * count
        steps.append(f"{count} {animal}(s) x {legs} legs = {legs * count}; running total {total}.")
    return steps, str(total)


def solve_spell_backward(entry: Entry) -> tuple[list[str], str]:
    word = entry["metadata"]["word"]
    return [f"The letters of {word} are {', '.join(word)}.", "Read them from last to first."], word[::-1]


def solve_letter_counting(entry: Entry) -> tuple[list[str], str]:
    meta = entry["metadata"]
    letter, words = meta["target_letter"], meta["span"]
    steps, total = [], 0
    for w in words:
        n = w.lower().count(letter.lower())
        total += n
        if n:
            steps.append(f"'{w}' has {n}; running total {total}.")
    return steps or [f"No word contains '{letter}'."], str(total)
