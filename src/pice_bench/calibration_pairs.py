"""Hand-made answer pairs for calibrating a judge (see :mod:`pice_bench.calibration`).

``CLEAR`` and ``HELDOUT``: (question, better, worse, how the worse one fails) — a correct,
complete answer against a wrong, truncated or off-topic one. ``REASONABLE``: (question, one,
another) — two acceptable answers, neither known to be better. Written for this project.
"""

from __future__ import annotations

CLEAR = [
    (
        "What causes the seasons on Earth?",
        "The seasons are caused by the tilt of Earth's axis, about 23.5 degrees relative to its "
        "orbit. As Earth orbits the Sun, the hemisphere tilted toward the Sun receives more direct "
        "sunlight and longer days, so it has summer; the hemisphere tilted away gets sunlight at a "
        "lower angle and shorter days, so it has winter. The distance to the Sun changes only a "
        "little and is not the cause: Earth is actually closest to the Sun in January.",
        "The seasons happen because Earth's distance from the Sun changes a lot during the year. "
        "In summer Earth is much closer to the Sun, so it is hot, and in winter Earth is much "
        "farther away, so it is cold. The tilt of the axis has nothing to do with it.",
        "wrong",
    ),
    (
        "Give three tips for sleeping better.",
        "1. Keep a regular schedule: go to bed and get up at the same time every day, even at "
        "weekends.\n2. Avoid caffeine after midday and heavy meals or alcohol close to bedtime.\n"
        "3. Make the bedroom dark, quiet and cool, and put screens away an hour before sleep.",
        "1. Keep a regular schedule: go to bed and get",
        "truncated",
    ),
    (
        "How do I reverse a list in Python?",
        "Use `my_list.reverse()` to reverse the list in place, or `my_list[::-1]` to get a new "
        "reversed copy:\n\n```python\nnums = [1, 2, 3]\nnums.reverse()   # nums is now [3, 2, 1]\n"
        "rev = nums[::-1]  # a reversed copy: [1, 2, 3]\n```\n`reversed(my_list)` gives an "
        "iterator if you only need to loop backwards.",
        "Python is a popular high-level programming language created by Guido van Rossum and "
        "first released in 1991. It emphasises readability and is widely used in web development, "
        "data science and automation.",
        "off-topic",
    ),
    (
        "What is 17 multiplied by 24?",
        "17 × 24 = 408 (17 × 20 = 340 and 17 × 4 = 68; 340 + 68 = 408).",
        "17 × 24 = 418 (17 × 20 = 340 and 17 × 4 = 78; 340 + 78 = 418).",
        "wrong",
    ),
    (
        "Explain what a hash table is.",
        "A hash table is a data structure that stores key-value pairs. A hash function turns "
        "each key into an index in an array of buckets, so looking up, inserting or deleting a "
        "key takes constant time on average. When two keys hash to the same bucket (a collision) "
        "the table resolves it, for example by keeping a small list per bucket or by probing for "
        "the next free slot. Python's dict is a hash table.",
        "A hash table is a data structure that",
        "truncated",
    ),
    (
        "Suggest three ideas for a healthy breakfast.",
        "1. Oatmeal with berries, a spoon of nuts and a little honey.\n2. Greek yogurt with "
        "sliced fruit and granola.\n3. Whole-grain toast with avocado and a poached egg.",
        "Lunch is usually eaten around midday. In many countries it is a lighter meal than "
        "dinner, and sandwiches and salads are popular choices for people who work in offices.",
        "off-topic",
    ),
]

HELDOUT = [
    (
        "What is the capital of Australia?",
        "The capital of Australia is Canberra. It was purpose-built as a compromise between "
        "Sydney and Melbourne, the two largest cities, and has been the seat of government "
        "since 1927.",
        "The capital of Australia is Sydney. It is the largest city in the country and home to "
        "the famous Opera House and Harbour Bridge.",
        "wrong",
    ),
    (
        "How do I make a cup of black tea?",
        "1. Bring fresh water to the boil.\n2. Put a tea bag or a teaspoon of loose tea in a "
        "warmed cup or pot.\n3. Pour the water over it and steep for 3-5 minutes.\n4. Remove "
        "the tea and add milk, sugar or lemon to taste.",
        "1. Bring fresh water to the boil.\n2. Put a tea",
        "truncated",
    ),
    (
        "Name three renewable energy sources.",
        "Solar power (sunlight turned into electricity by panels), wind power (turbines driven "
        "by the wind) and hydropower (water flowing through dams or rivers turning turbines).",
        "Coal was the main fuel of the industrial revolution. It powered steam engines and "
        "factories across Europe in the 18th and 19th centuries.",
        "off-topic",
    ),
    (
        "Why is the sky blue?",
        "Sunlight contains all colours. Air molecules scatter short wavelengths much more than "
        "long ones (Rayleigh scattering), so blue light is scattered across the whole sky and "
        "reaches our eyes from every direction, which makes the sky look blue.",
        "The sky is blue because it reflects the colour of the oceans, which cover most of the "
        "Earth's surface.",
        "wrong",
    ),
]

REASONABLE = [
    (
        "What are the benefits of regular exercise?",
        "Regular exercise strengthens the heart and lungs, helps control weight, builds muscle "
        "and bone, improves mood and sleep, and lowers the risk of diabetes and some cancers.",
        "Exercising regularly is good for you. It keeps your heart healthy and it can make you "
        "feel happier because the body releases endorphins during physical activity.",
    ),
    (
        "Explain recursion to a beginner.",
        "Recursion is when a function calls itself to solve a smaller version of the same "
        "problem. For example, factorial(n) = n × factorial(n − 1), and factorial(1) = 1 stops "
        "the calls. Every recursive function needs such a base case, or it never ends.",
        "Think of Russian nesting dolls: to reach the smallest doll you open a doll and find a "
        "smaller one inside, and you repeat until there is no doll left to open. Recursion works "
        "the same way: a function solves a problem by calling itself on a smaller piece, until "
        "the piece is so small that the answer is obvious.",
    ),
    (
        "Suggest a name for a small coffee shop.",
        'How about "The Daily Grind"? It is short, easy to remember and hints at both coffee '
        "and the everyday routine of the regulars.",
        'Some ideas: "Bean There", "Brew & Co.", "Morning Ritual" or "The Cozy Cup". Pick '
        "the one that fits the shop's atmosphere best.",
    ),
]
