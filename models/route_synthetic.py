"""Template-generated training prompts for the semroute route classifier.

Why this module exists: the public labelled corpus that the route classifier is trained on
is thin exactly where real chat traffic is thick -- "write me a python script that ...",
"here's my code, it throws TypeError ... why?", "write a poem about ...", "translate this to
German: ...", "SQL query to get ...", pasted tracebacks, pasted texts to summarise, and
prompts in languages other than English. This module fills those gaps with synthetic prompts.

Provenance and licence: every template, slot value, code snippet, error message and passage
in this file was written by the semroute team for this purpose; nothing is copied from public
benchmarks or datasets (MT-Bench, MMLU, HumanEval, GSM8K, Chatbot Arena, ...). The content is
licensed under the project's own licence, Apache-2.0.

Caveat: these prompts are template-generated and share phrasing within a template. They are
for TRAINING (and for in-distribution sanity checks only). They must NEVER be used as an
evaluation set for out-of-source accuracy: a classifier trained on them will look far better
on them than it is on real traffic. When a held-out split of this data is needed, split by
the ``template`` field so that whole templates are held out.

Usage::

    from route_synthetic import synthetic_prompts

    rows = synthetic_prompts(seed=20261201, per_route=600)
    # [{"prompt": ..., "route": ..., "lang": ..., "template": "debugging/py_traceback/3"}, ...]
"""

from __future__ import annotations

import random
import string
from collections.abc import Mapping
from typing import Any

__all__ = ["ROUTES", "synthetic_prompts"]

# ---------------------------------------------------------------------------------------------
# Shared passages: reused by summarization, rewriting, extraction and classification with
# different asks. Each has a kind (used in phrasing) and a text.
# ---------------------------------------------------------------------------------------------

PASSAGES: list[dict[str, str]] = [
    {
        "kind": "email",
        "text": (
            "Hi Marta, just a heads-up that the quarterly review with the Lisbon team has been "
            "moved from Thursday 14 March to Monday 18 March at 10:00 CET. Please send your "
            "slides to jonas.weber@northwind-logistics.com by Friday noon so we can merge them. "
            "We'll also need the updated headcount numbers from finance. Thanks, Jonas"
        ),
    },
    {
        "kind": "review",
        "text": (
            "Bought the AeroBrew 3000 coffee grinder two weeks ago. The grind is consistent and "
            "it's quieter than my old one, but the hopper lid cracked on day five and customer "
            "support took eight days to answer my email. For $149 I expected better build "
            "quality. Three stars."
        ),
    },
    {
        "kind": "support ticket",
        "text": (
            "Ticket #48213 - Customer: Priya Nair (priya.nair@example.org). Since the 2.4.1 app "
            "update, the mobile app logs her out every time she switches to another app. She is "
            "on an iPhone 13, iOS 17.3. She has already reinstalled twice. She is on the Pro "
            "plan and says she will cancel if it is not fixed this week."
        ),
    },
    {
        "kind": "news paragraph",
        "text": (
            "The city council of Riverton voted 7-2 on Tuesday to convert three downtown parking "
            "lots into a public park and bike hub. Construction is expected to begin in May and "
            "cost about $4.2 million, funded partly by a state grant. Local business owners are "
            "split: some welcome more foot traffic, others worry about losing customer parking."
        ),
    },
    {
        "kind": "meeting notes",
        "text": (
            "Sprint planning 06/02. Attendees: Ana, Tom, Wei, Lukas. Decided to postpone the "
            "billing page redesign to next sprint. Tom owns the login rate-limit bug (due Feb 9). "
            "Wei will write the migration for the orders table. Open question: do we drop IE11 "
            "support? Lukas to check analytics and report back Thursday."
        ),
    },
    {
        "kind": "review",
        "text": (
            "Honestly the best ramen place in the neighbourhood. The broth is rich without being "
            "greasy, the staff remembered my order on my second visit, and prices are fair. Only "
            "downside is the wait on Friday nights - we queued 40 minutes. Will be back!"
        ),
    },
    {
        "kind": "email",
        "text": (
            "Dear Mr. Okafor, thank you for your application for the Senior Data Analyst role. "
            "We would like to invite you to a second interview on 3 April at 2:30 pm at our "
            "Manchester office, 12 King Street. Please confirm by replying to this email or "
            "calling +44 161 555 0192. Kind regards, Helen Price, Talent Acquisition"
        ),
    },
    {
        "kind": "product description",
        "text": (
            "The TrailLite 2 is a two-person backpacking tent weighing 1.3 kg. It packs down to "
            "the size of a water bottle, sets up in under three minutes with a single pole, and "
            "has a 3000 mm waterproof rating. Available in olive and sand for $229."
        ),
    },
    {
        "kind": "support ticket",
        "text": (
            "User reports that CSV exports from the analytics dashboard contain garbled "
            "characters for names with accents (e.g. 'JosÃ©' instead of 'José'). Happens in "
            "Excel on Windows, not in Google Sheets. Account: Brightline Media, plan Enterprise, "
            "reported 2024-05-21 by support agent Kevin."
        ),
    },
    {
        "kind": "news paragraph",
        "text": (
            "Shares of Helix Robotics fell 12% on Wednesday after the company cut its full-year "
            "revenue forecast, citing delays at its Ohio battery plant. CEO Dana Whitfield said "
            "the plant should reach full output by the third quarter. Analysts at two banks "
            "lowered their price targets."
        ),
    },
    {
        "kind": "message",
        "text": (
            "hey!! so sorry i missed your call, was at the dentist lol. are we still on for "
            "saturday? i can bring the salad and drinks. also my sister might join if that's ok, "
            "she just moved back from Berlin. text me the address again pls"
        ),
    },
    {
        "kind": "complaint",
        "text": (
            "I have now been charged twice for order #A-55910 and nobody has replied to my three "
            "emails. This is unacceptable. I want a full refund of the duplicate charge of "
            "EUR 86.40 within five working days or I will dispute it with my bank."
        ),
    },
    {
        "kind": "paragraph",
        "text": (
            "Remote work has changed how teams communicate. Without hallway conversations, many "
            "companies rely on written updates and recorded demos. Supporters say this leaves a "
            "better record of decisions; critics say it slows down quick problem solving and "
            "makes it harder for new hires to build relationships."
        ),
    },
    {
        "kind": "meeting notes",
        "text": (
            "Board call, 12 Sept. Revenue Q2: $3.1M (+18% YoY). Marketing budget approved at "
            "$400k for H2. Hiring freeze lifted for engineering only. Sarah Lin appointed interim "
            "CFO from 1 October. Next board meeting: 14 November, in person in Austin."
        ),
    },
    {
        "kind": "review",
        "text": (
            "The app does what it says but the ads are out of control. Every second screen is a "
            "30-second video. I'd happily pay for a premium version but there isn't one. Deleting "
            "it until they fix this."
        ),
    },
    {
        "kind": "email",
        "text": (
            "Hello team, the office will be closed on Friday 24 May for maintenance on the "
            "heating system. Please take your laptops home on Thursday. The VPN will be available "
            "as usual. If you need access to the building, contact facilities@acme-corp.io. "
            "Best, Facilities"
        ),
    },
    {
        "kind": "paragraph",
        "text": (
            "Sourdough bread relies on a starter, a culture of wild yeast and lactic acid "
            "bacteria. The bacteria produce acids that give the bread its tangy flavour, while "
            "the yeast produces carbon dioxide that makes the dough rise. A long, cool "
            "fermentation usually gives a more complex taste."
        ),
    },
    {
        "kind": "support ticket",
        "text": (
            "Subject: cannot reset password. The reset link in the email says 'token expired' "
            "even when I click it immediately. Tried Chrome and Firefox. My username is "
            "dkowalski88, registered with d.kowalski@poczta.pl. Please help, I need to file my "
            "report by tomorrow."
        ),
    },
    {
        "kind": "news paragraph",
        "text": (
            "Heavy rain caused flooding across northern Portugal over the weekend, forcing about "
            "1,200 people from their homes. Train services between Porto and Braga were suspended "
            "on Sunday. The weather service expects the rain to ease by Tuesday."
        ),
    },
    {
        "kind": "message",
        "text": (
            "CONGRATULATIONS!!! You have been selected to receive a $500 Amazon gift card. Click "
            "the link below within 24 hours to claim your reward: http://bit.ly/claim-now-prize "
            "Reply STOP to unsubscribe."
        ),
    },
    {
        "kind": "paragraph",
        "text": (
            "Our onboarding survey got 214 responses. 68% of new users said setup took less than "
            "ten minutes, but 41% could not find the integrations page without help. The most "
            "requested feature was a Slack integration, followed by dark mode and SSO."
        ),
    },
    {
        "kind": "cover letter paragraph",
        "text": (
            "i am writing to apply for the marketing coordinator job i saw on your website. i "
            "have 3 years experience in social media and i managed campaigns for a local gym "
            "and a bakery. i am very organised and i think i would be a good fit for your team"
        ),
    },
    {
        "kind": "review",
        "text": (
            "Stayed at the Harbour View Hotel for three nights in June. Room 412 had a lovely sea "
            "view and the breakfast buffet was excellent, but the air conditioning was broken "
            "the whole time and reception kept saying someone would come. Check-out was smooth."
        ),
    },
    {
        "kind": "email",
        "text": (
            "Hi all, reminder that expense reports for March are due by 5 April. Use the new "
            "template in the shared drive; the old one will be rejected. Receipts over $75 must "
            "be attached. Questions go to Raj Patel in accounting (ext. 4471)."
        ),
    },
    {
        "kind": "paragraph",
        "text": (
            "Electric scooters have spread quickly in European cities. They cut short car trips, "
            "but injuries have risen, and pavements are often blocked by parked scooters. Paris "
            "banned rental scooters in 2023 after a public vote, while Madrid and Prague "
            "introduced stricter rules."
        ),
    },
    {
        "kind": "chat message",
        "text": (
            "you guys are useless. third time i'm asking where my package is. tracking says "
            "delivered but nothing here. order 77812, ship to 45 Elm Road, Leeds. sort it out"
        ),
    },
    {
        "kind": "announcement",
        "text": (
            "We're excited to announce that Pinecrest Library will extend its opening hours "
            "starting 1 September: Monday to Friday 8am-9pm and Saturdays 9am-6pm. The new "
            "children's reading room on the second floor opens the same day with a free story "
            "hour at 11am."
        ),
    },
    {
        "kind": "incident report",
        "text": (
            "At 02:14 UTC the payments API began returning 503 errors after a config push raised "
            "the connection pool size beyond the database limit. About 6% of checkout requests "
            "failed over 37 minutes. The change was rolled back at 02:51. Action items: add a "
            "pre-deploy check on pool limits and an alert on 5xx rate."
        ),
    },
    {
        "kind": "review",
        "text": (
            "Absolutely love these headphones. Noise cancelling is superb on flights, battery "
            "lasts about 30 hours, and they fold flat. The case is bulky, but that's a small "
            "price to pay. Five stars from me."
        ),
    },
    {
        "kind": "paragraph",
        "text": (
            "The company was founded in 2009 by two former teachers, Maria Gomez and Ben Carter, "
            "in a garage in Portland. It now has 340 employees and offices in Dublin and "
            "Singapore, and its reading app is used in more than 9,000 schools."
        ),
    },
    {
        "kind": "forum post",
        "text": (
            "Does anyone else find that the new update made the game way harder? I used to clear "
            "level 30 easily, now the boss one-shots me. Not complaining exactly, just wondering "
            "if they changed the damage numbers or if I'm just rusty."
        ),
    },
    {
        "kind": "message",
        "text": (
            "Your verification code is 482 913. It expires in 10 minutes. If you did not request "
            "this code, please ignore this message or contact support at help@paysafe-app.com."
        ),
    },
]

# ---------------------------------------------------------------------------------------------
# Debugging bundles: a short code snippet, the error it produces, and its language.
# ---------------------------------------------------------------------------------------------

PY_BUGS: list[dict[str, str]] = [
    {
        "code": "def total(items):\n    return sum(i['price'] for i in items)\n\n"
        "print('Total: ' + total(cart))",
        "err": 'Traceback (most recent call last):\n  File "shop.py", line 4, in <module>\n'
        "    print('Total: ' + total(cart))\n"
        'TypeError: can only concatenate str (not "float") to str',
    },
    {
        "code": "import json\nwith open('config.json') as f:\n    cfg = json.load(f)\n"
        "print(cfg['database']['host'])",
        "err": 'Traceback (most recent call last):\n  File "app.py", line 4, in <module>\n'
        "    print(cfg['database']['host'])\nKeyError: 'database'",
    },
    {
        "code": "nums = [3, 1, 4]\nfor i in range(len(nums) + 1):\n    print(nums[i])",
        "err": 'Traceback (most recent call last):\n  File "loop.py", line 3, in <module>\n'
        "    print(nums[i])\nIndexError: list index out of range",
    },
    {
        "code": "class User:\n    def __init__(self, name):\n        self.name = name\n\n"
        "u = User()\n",
        "err": 'Traceback (most recent call last):\n  File "models.py", line 5, in <module>\n'
        "    u = User()\nTypeError: User.__init__() missing 1 required positional argument: "
        "'name'",
    },
    {
        "code": "import pandas as pd\ndf = pd.read_csv('sales.csv')\ndf['total'] = df['qty'] * "
        "df['Price']",
        "err": "KeyError: 'Price'\n\nThe above exception was the direct cause of the following "
        "exception:\n...\n  File \"report.py\", line 3, in <module>\nKeyError: 'Price'",
    },
    {
        "code": "def get_user(id):\n    user = db.find(id)\n    return user.email",
        "err": 'Traceback (most recent call last):\n  File "service.py", line 3, in get_user\n'
        "    return user.email\nAttributeError: 'NoneType' object has no attribute 'email'",
    },
    {
        "code": "from utils import parse_date\n\nprint(parse_date('2024-01-05'))",
        "err": 'Traceback (most recent call last):\n  File "main.py", line 1, in <module>\n'
        "    from utils import parse_date\nImportError: cannot import name 'parse_date' from "
        "'utils' (/home/dev/proj/utils.py)",
    },
    {
        "code": "import requests\nr = requests.get(url, timeout=5)\ndata = r.json()",
        "err": "requests.exceptions.JSONDecodeError: Expecting value: line 1 column 1 (char 0)",
    },
    {
        "code": "count = 0\ndef increment():\n    count += 1\n\nincrement()",
        "err": 'Traceback (most recent call last):\n  File "counter.py", line 5, in <module>\n'
        '    increment()\n  File "counter.py", line 3, in increment\n    count += 1\n'
        "UnboundLocalError: cannot access local variable 'count' where it is not associated "
        "with a value",
    },
    {
        "code": "d = {'a': 1, 'b': 2}\nfor k in d:\n    if d[k] == 1:\n        del d[k]",
        "err": "RuntimeError: dictionary changed size during iteration",
    },
    {
        "code": "age = input('Age: ')\nif age > 18:\n    print('adult')",
        "err": "TypeError: '>' not supported between instances of 'str' and 'int'",
    },
    {
        "code": "import numpy as np\na = np.zeros((3, 4))\nb = np.ones((4, 3))\nprint(a + b)",
        "err": "ValueError: operands could not be broadcast together with shapes (3,4) (4,3)",
    },
    {
        "code": "async def fetch():\n    return 42\n\nresult = fetch()\nprint(result + 1)",
        "err": "TypeError: unsupported operand type(s) for +: 'coroutine' and 'int'\n"
        "RuntimeWarning: coroutine 'fetch' was never awaited",
    },
    {
        "code": "def fact(n):\n    return n * fact(n - 1)\n\nprint(fact(5))",
        "err": "RecursionError: maximum recursion depth exceeded",
    },
    {
        "code": "with open('data.txt') as f:\n    text = f.read()",
        "err": "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xe9 in position 1042: "
        "invalid continuation byte",
    },
    {
        "code": "import torch\nx = torch.randn(32, 128).cuda()\n"
        "w = torch.randn(128, 10)\ny = x @ w",
        "err": "RuntimeError: Expected all tensors to be on the same device, but found at least "
        "two devices, cuda:0 and cpu!",
    },
    {
        "code": "from django.shortcuts import render\n\ndef index(request):\n"
        "    return render(request, 'home.html', context)",
        "err": "NameError: name 'context' is not defined",
    },
    {
        "code": "def add(a, b):\n    return a + b\n\n"
        "def test_add():\n    assert add(0.1, 0.2) == 0.3",
        "err": "FAILED test_math.py::test_add - assert 0.30000000000000004 == 0.3",
    },
    {
        "code": "value = int('12.5')",
        "err": "ValueError: invalid literal for int() with base 10: '12.5'",
    },
    {
        "code": "from flask import Flask\napp = Flask(__name__)\n\n@app.route('/')\ndef home():\n"
        "    return {'ok': True}, 'hello'",
        "err": "TypeError: The view function did not return a valid response. The status must "
        "be an int",
    },
]

JS_BUGS: list[dict[str, str]] = [
    {
        "code": "const user = await getUser(id);\nconsole.log(user.profile.name);",
        "err": "TypeError: Cannot read properties of undefined (reading 'name')\n"
        "    at main (/app/index.js:12:29)",
    },
    {
        "code": "const items = fetch('/api/items').json();\nitems.map(i => i.id);",
        "err": "TypeError: fetch(...).json is not a function",
    },
    {
        "code": "function Counter() {\n  const [n, setN] = useState(0);\n  setN(n + 1);\n"
        "  return <div>{n}</div>;\n}",
        "err": "Error: Too many re-renders. React limits the number of renders to prevent an "
        "infinite loop.",
    },
    {
        "code": "import express from 'express';\nconst app = express();",
        "err": "SyntaxError: Cannot use import statement outside a module",
    },
    {
        "code": "let total: number = '0';\ntotal += price;",
        "err": "error TS2322: Type 'string' is not assignable to type 'number'.",
    },
    {
        "code": "const res = await fetch('http://localhost:4000/api/login', { method: 'POST' });",
        "err": "Access to fetch at 'http://localhost:4000/api/login' from origin "
        "'http://localhost:3000' has been blocked by CORS policy: No "
        "'Access-Control-Allow-Origin' header is present on the requested resource.",
    },
    {
        "code": "{todos.map(todo => <li>{todo.title}</li>)}",
        "err": 'Warning: Each child in a list should have a unique "key" prop.',
    },
    {
        "code": "const data = JSON.parse(localStorage.getItem('settings'));\n"
        "console.log(data.theme);",
        "err": "TypeError: Cannot read properties of null (reading 'theme')",
    },
    {
        "code": "const fs = require('fs');\nconst txt = fs.readFileSync('./input.txt', 'utf8');",
        "err": "Error: ENOENT: no such file or directory, open './input.txt'\n"
        "    at Object.openSync (node:fs:596:3)",
    },
    {
        "code": "useEffect(async () => {\n  const r = await api.get('/me');\n  setUser(r.data);\n"
        "}, []);",
        "err": "Warning: useEffect must not return anything besides a function, which is used "
        "for clean-up.",
    },
    {
        "code": "class Cart {\n  add(item) { this.items.push(item); }\n}\n"
        "button.onclick = cart.add;",
        "err": "Uncaught TypeError: Cannot read properties of undefined (reading 'items')",
    },
    {
        "code": "mongoose.connect(process.env.MONGO_URL);",
        "err": "MongooseError: The `uri` parameter to `openUri()` must be a string, got "
        '"undefined".',
    },
]

JAVA_BUGS: list[dict[str, str]] = [
    {
        "code": 'String name = user.getName();\nif (name.equals("admin")) { ... }',
        "err": 'Exception in thread "main" java.lang.NullPointerException: Cannot invoke '
        '"String.equals(Object)" because "name" is null\n'
        "\tat com.acme.auth.LoginService.check(LoginService.java:42)\n"
        "\tat com.acme.auth.Main.main(Main.java:15)",
    },
    {
        "code": "for (String s : list) {\n    if (s.isEmpty()) list.remove(s);\n}",
        "err": 'Exception in thread "main" java.util.ConcurrentModificationException\n'
        "\tat java.base/java.util.ArrayList$Itr.checkForComodification(ArrayList.java:1013)",
    },
    {
        "code": "int[] arr = new int[5];\nfor (int i = 0; i <= arr.length; i++) arr[i] = i;",
        "err": "java.lang.ArrayIndexOutOfBoundsException: Index 5 out of bounds for length 5",
    },
    {
        "code": 'Object o = "42";\nInteger n = (Integer) o;',
        "err": "java.lang.ClassCastException: class java.lang.String cannot be cast to class "
        "java.lang.Integer",
    },
    {
        "code": "@Autowired\nprivate OrderRepository repo;",
        "err": "***************************\nAPPLICATION FAILED TO START\n"
        "***************************\nField repo in com.shop.OrderService required a bean of "
        "type 'com.shop.OrderRepository' that could not be found.",
    },
    {
        "code": 'val user: User = intent.getParcelableExtra("user")',
        "err": "Type mismatch: inferred type is User? but User was expected",
    },
    {
        "code": "List<Integer> xs = List.of(1, 2, 3);\nxs.add(4);",
        "err": "java.lang.UnsupportedOperationException\n\tat java.base/java.util."
        "ImmutableCollections.uoe(ImmutableCollections.java:142)",
    },
]

NATIVE_BUGS: list[dict[str, str]] = [
    {
        "lang": "C",
        "code": 'char *s;\nstrcpy(s, "hello");\nprintf("%s\\n", s);',
        "err": "Segmentation fault (core dumped)",
    },
    {
        "lang": "C",
        "code": "int *a = malloc(10 * sizeof(int));\nfree(a);\nfree(a);",
        "err": "free(): double free detected in tcache 2\nAborted (core dumped)",
    },
    {
        "lang": "C++",
        "code": "std::vector<int> v;\nstd::cout << v[0] << std::endl;",
        "err": "Segmentation fault (core dumped)",
    },
    {
        "lang": "C++",
        "code": '#include "parser.h"\nint main() { Parser p; p.run(); }',
        "err": "/usr/bin/ld: main.o: in function `main':\nmain.cpp:(.text+0x1f): undefined "
        "reference to `Parser::run()'\ncollect2: error: ld returned 1 exit status",
    },
    {
        "lang": "C++",
        "code": "std::unique_ptr<Node> a = std::make_unique<Node>();\nstd::unique_ptr<Node> b = a;",
        "err": "error: use of deleted function 'std::unique_ptr<_Tp, _Dp>::unique_ptr(const "
        "std::unique_ptr<_Tp, _Dp>&)'",
    },
    {
        "lang": "Rust",
        "code": 'let s = String::from("hi");\nlet t = s;\nprintln!("{}", s);',
        "err": "error[E0382]: borrow of moved value: `s`\n --> src/main.rs:3:20\n  |\n"
        "2 |     let t = s;\n  |             - value moved here",
    },
    {
        "lang": "Rust",
        "code": "let mut v = vec![1, 2, 3];\nlet first = &v[0];\nv.push(4);\n"
        'println!("{}", first);',
        "err": "error[E0502]: cannot borrow `v` as mutable because it is also borrowed as "
        "immutable",
    },
    {
        "lang": "Rust",
        "code": "fn longest(a: &str, b: &str) -> &str {\n"
        "    if a.len() > b.len() { a } else { b }\n}",
        "err": "error[E0106]: missing lifetime specifier\n = help: this function's return type "
        "contains a borrowed value, but the signature does not say whether it is borrowed "
        "from `a` or `b`",
    },
    {
        "lang": "Rust",
        "code": 'let n: i32 = "42".parse().unwrap();\nlet m: u64 = n * 2;',
        "err": "error[E0308]: mismatched types\n expected `u64`, found `i32`",
    },
    {
        "lang": "Go",
        "code": 'var m map[string]int\nm["a"] = 1',
        "err": "panic: assignment to entry in nil map\n\ngoroutine 1 [running]:\n"
        "main.main()\n\t/home/dev/app/main.go:5 +0x2e\nexit status 2",
    },
    {
        "lang": "Go",
        "code": "ch := make(chan int)\nch <- 1\nfmt.Println(<-ch)",
        "err": "fatal error: all goroutines are asleep - deadlock!\n\ngoroutine 1 [chan send]:",
    },
    {
        "lang": "Go",
        "code": "var p *Config\nfmt.Println(p.Port)",
        "err": "panic: runtime error: invalid memory address or nil pointer dereference\n"
        "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x47b6a6]",
    },
    {
        "lang": "Go",
        "code": 'import (\n    "fmt"\n    "os"\n)\n\nfunc main() { fmt.Println("hi") }',
        "err": './main.go:5:5: "os" imported and not used',
    },
    {
        "lang": "C#",
        "code": "var order = orders.First(o => o.Id == id);",
        "err": "System.InvalidOperationException: Sequence contains no matching element\n"
        "   at System.Linq.ThrowHelper.ThrowNoMatchException()",
    },
    {
        "lang": "Swift",
        "code": "let url = URL(string: path)!\nlet data = try! Data(contentsOf: url)",
        "err": "Fatal error: Unexpectedly found nil while unwrapping an Optional value",
    },
]

BUILD_ERRORS: list[dict[str, str]] = [
    {
        "lang": "npm",
        "err": "npm ERR! code ERESOLVE\nnpm ERR! ERESOLVE unable to resolve dependency tree\n"
        "npm ERR! Found: react@18.2.0\nnpm ERR! Could not resolve dependency:\n"
        'npm ERR! peer react@"^16.8.0 || ^17.0.0" from react-beautiful-dnd@13.1.1',
    },
    {
        "lang": "webpack",
        "err": "Module not found: Error: Can't resolve './components/Header' in "
        "'/home/dev/site/src'",
    },
    {
        "lang": "cargo",
        "err": 'error: failed to select a version for the requirement `tokio = "^2.0"`\n'
        "candidate versions found which didn't match: 1.37.0, 1.36.0, 1.35.1",
    },
    {
        "lang": "gradle",
        "err": "FAILURE: Build failed with an exception.\n* What went wrong:\n"
        "Execution failed for task ':app:compileDebugKotlin'.\n> Compilation error. See log "
        "for more details",
    },
    {
        "lang": "pip",
        "err": "error: subprocess-exited-with-error\n  × Building wheel for psycopg2 "
        "(pyproject.toml) did not run successfully.\n  Error: pg_config executable not found.",
    },
    {
        "lang": "Docker",
        "err": "ERROR [4/6] RUN npm ci\n#8 2.113 npm ERR! The `npm ci` command can only install "
        "with an existing package-lock.json",
    },
    {
        "lang": "jest",
        "err": "FAIL src/utils/format.test.ts\n  ● formatPrice › adds currency symbol\n\n"
        '    expect(received).toBe(expected)\n    Expected: "$10.00"\n    Received: "10"',
    },
    {
        "lang": "Maven",
        "err": "[ERROR] Failed to execute goal org.apache.maven.plugins:maven-compiler-plugin:"
        "3.11.0:compile: Fatal error compiling: error: invalid target release: 21",
    },
    {
        "lang": "git",
        "err": "! [rejected]        main -> main (non-fast-forward)\nerror: failed to push some "
        "refs to 'github.com:acme/site.git'",
    },
    {
        "lang": "CMake",
        "err": "CMake Error at CMakeLists.txt:12 (find_package):\n  Could not find a package "
        'configuration file provided by "OpenCV"',
    },
]

BUG_SYMPTOMS: list[str] = [
    "my function returns None instead of the list",
    "the loop never stops",
    "the page flickers every time the state changes",
    "the API returns 200 but the body is empty",
    "the unit test passes locally but fails in CI",
    "the dates are off by one day after saving to the database",
    "memory usage keeps growing until the process is killed",
    "the button click handler fires twice",
    "my regex matches the whole line instead of just the number",
    "the sorted list comes out in the wrong order for numbers above 9",
    "the Docker container exits immediately with code 0",
    "my websocket disconnects every 60 seconds",
    "the CSS grid collapses on mobile",
    "my recursive function gives the wrong answer for n = 0",
    "the script works on Linux but crashes on Windows",
    "the cron job doesn't run at all",
]

# ---------------------------------------------------------------------------------------------
# Code generation slots.
# ---------------------------------------------------------------------------------------------

PROG_LANGS: list[str] = [
    "Python",
    "JavaScript",
    "TypeScript",
    "Java",
    "C",
    "C++",
    "Go",
    "Rust",
    "C#",
    "Ruby",
    "PHP",
    "Kotlin",
    "Swift",
    "Bash",
    "Scala",
    "Dart",
    "Lua",
    "R",
    "Haskell",
    "Elixir",
]

CODE_TASKS: list[str] = [
    "checks whether a string is a palindrome",
    "reads a CSV file and prints the average of the 'price' column",
    "removes duplicate lines from a text file",
    "downloads a web page and counts the links on it",
    "validates an email address",
    "merges two sorted lists into one sorted list",
    "converts a Roman numeral to an integer",
    "finds the second largest number in an array",
    "renames all .jpeg files in a folder to .jpg",
    "implements a simple LRU cache",
    "parses a log file and counts errors per hour",
    "generates a random password of a given length",
    "flattens a nested list",
    "computes the Levenshtein distance between two strings",
    "retries an HTTP request with exponential backoff",
    "watches a directory and prints new files",
    "converts a JSON file to YAML",
    "implements binary search",
    "debounces a function call",
    "sends an email with an attachment via SMTP",
    "resizes all images in a folder to 800px wide",
    "checks if a number is prime",
    "groups a list of words into anagrams",
    "implements a thread-safe counter",
    "parses command-line arguments for an input and output file",
    "reverses a linked list",
    "counts word frequencies in a text and prints the top 10",
    "backs up a PostgreSQL database every night",
    "converts Celsius to Fahrenheit and back",
    "validates a Sudoku board",
    "implements a rate limiter using a token bucket",
    "serialises a binary tree to a string and back",
]

CODE_ARTIFACTS: list[str] = [
    "a REST API with CRUD endpoints for a todo list",
    "a React component that shows a paginated table",
    "a CLI tool that converts Markdown to HTML",
    "a Discord bot that replies to !ping with pong",
    "a Flask app with user login",
    "an Express middleware that logs request duration",
    "a Vue component for a star rating input",
    "a class representing a bank account with deposit and withdraw",
    "a web scraper for product prices",
    "a Spring Boot controller for /orders",
    "a GitHub Actions workflow that runs tests on every push",
    "a Dockerfile for a Node.js app",
    "a Telegram bot that sends the weather",
    "a snake game in the terminal",
    "a linked list class with insert, delete and search",
    "a FastAPI endpoint that uploads a file to S3",
    "a Go HTTP server with graceful shutdown",
    "a Rust CLI that counts lines of code in a directory",
    "a custom React hook for fetching data",
    "a Kotlin data class for a user with JSON serialisation",
    "a SwiftUI view with a login form",
    "a Unity script that makes the player jump",
    "a Chrome extension that highlights a word on every page",
    "a bash script that cleans up Docker images older than 7 days",
    "a gRPC service definition and server for a key-value store",
]

CODE_CONTEXTS: list[dict[str, str]] = [
    {
        "lang": "Python",
        "code": "class Inventory:\n    def __init__(self):\n        self.items = {}\n\n"
        "    def add(self, name, qty):\n        self.items[name] = self.items.get(name, 0) + qty",
        "ask": "a remove method that raises an error if there isn't enough stock",
    },
    {
        "lang": "Python",
        "code": "def load_users(path):\n    with open(path) as f:\n        return [line.strip()"
        ".split(',') for line in f]",
        "ask": "type hints and a docstring, and make it skip the header row",
    },
    {
        "lang": "JavaScript",
        "code": "const cart = {\n  items: [],\n  add(item) { this.items.push(item); },\n};",
        "ask": "a total() method that sums price * qty",
    },
    {
        "lang": "TypeScript",
        "code": "interface Task {\n  id: number;\n  title: string;\n  done: boolean;\n}",
        "ask": "a function that filters tasks by status and sorts them by title",
    },
    {
        "lang": "Java",
        "code": "public class Student {\n    private String name;\n    private int[] grades;\n}",
        "ask": "a constructor, getters and a method that returns the average grade",
    },
    {
        "lang": "Go",
        "code": "type Server struct {\n\taddr string\n\tmux  *http.ServeMux\n}",
        "ask": "a /health endpoint and a Start method",
    },
    {
        "lang": "Rust",
        "code": "struct Stack<T> {\n    items: Vec<T>,\n}",
        "ask": "push, pop and peek methods",
    },
    {
        "lang": "C++",
        "code": "class Matrix {\n  int rows, cols;\n  std::vector<double> data;\n};",
        "ask": "an operator* for matrix multiplication",
    },
    {
        "lang": "React",
        "code": 'function SearchBox() {\n  return <input placeholder="Search..." />;\n}',
        "ask": "state and a 300 ms debounced onSearch callback prop",
    },
    {
        "lang": "SQLAlchemy",
        "code": "class Order(Base):\n    __tablename__ = 'orders'\n    id = Column(Integer, "
        "primary_key=True)",
        "ask": "a customer relationship and a created_at column",
    },
]

# ---------------------------------------------------------------------------------------------
# Creative writing and translation slots.
# ---------------------------------------------------------------------------------------------

CW_TOPICS: list[str] = [
    "autumn",
    "the ocean at night",
    "a lost cat",
    "moving to a new city",
    "my grandmother's kitchen",
    "the first day of spring",
    "coffee",
    "a rainy Monday",
    "friendship",
    "space exploration",
    "a lighthouse keeper",
    "learning to ride a bike",
    "the last train home",
    "a broken phone",
    "city lights",
    "a dragon who is afraid of fire",
    "winter in Moscow",
    "the smell of old books",
    "a robot learning to love",
    "mountains",
    "homesickness",
    "a time traveller stuck in 1995",
    "a haunted library",
    "a dog's first snow",
    "graduation",
]

CW_FORMS: list[str] = [
    "poem",
    "haiku",
    "sonnet",
    "limerick",
    "short story",
    "flash fiction piece",
    "song",
    "rap verse",
    "bedtime story",
    "fairy tale",
    "free-verse poem",
    "micro story",
]

CW_COPY: list[str] = [
    "a handmade soap shop",
    "a new vegan burger",
    "a budgeting app for students",
    "a yoga studio opening downtown",
    "noise-cancelling headphones",
    "a local bakery",
    "an eco-friendly water bottle",
    "a language-learning app",
    "a coworking space",
    "a dog-walking service",
    "a craft beer festival",
    "an online chess course",
    "a smart thermostat",
    "a bike repair shop",
    "a children's science museum",
]

CW_OCCASIONS: list[str] = [
    "my best friend's wedding",
    "my dad's retirement party",
    "a team farewell for a colleague",
    "my sister's 30th birthday",
    "a graduation ceremony",
    "our company's 10th anniversary",
    "a charity fundraiser dinner",
    "my parents' 40th anniversary",
]

CW_ROLES: list[str] = [
    "a pirate captain",
    "a medieval innkeeper",
    "Sherlock Holmes",
    "a grumpy wizard",
    "a tour guide on Mars",
    "a noir detective",
    "a sarcastic AI from the future",
    "a dungeon master",
    "a 1920s newspaper reporter",
    "a knight guarding a bridge",
]

CW_TONES: list[str] = [
    "funny",
    "melancholic",
    "heartwarming",
    "dark",
    "whimsical",
    "romantic",
    "inspiring",
    "spooky",
    "nostalgic",
    "absurd",
]

EN_PHRASES: list[str] = [
    "Where is the nearest train station?",
    "I would like to book a table for two at eight o'clock.",
    "Thank you so much for your help yesterday.",
    "The meeting has been moved to next Tuesday.",
    "Could you send me the invoice by email?",
    "I'm allergic to peanuts.",
    "Happy birthday! I hope all your wishes come true.",
    "Please keep the door closed at all times.",
    "How much does this cost?",
    "We are sorry for the inconvenience.",
    "Our store is closed on Sundays.",
    "I have been learning this language for two years.",
    "Can you recommend a good restaurant nearby?",
    "The package should arrive within three business days.",
    "Your password must contain at least eight characters.",
    "It's raining cats and dogs.",
    "Let's grab a coffee sometime next week.",
    "I lost my passport, what should I do?",
    "The product is out of stock.",
    "Click here to confirm your subscription.",
    "I miss you.",
    "Good luck with your exam tomorrow!",
    "No smoking in the building.",
    "Nice to meet you.",
]

TARGET_LANGS: list[str] = [
    "French",
    "German",
    "Spanish",
    "Italian",
    "Japanese",
    "Chinese",
    "Korean",
    "Portuguese",
    "Russian",
    "Arabic",
    "Dutch",
    "Polish",
    "Turkish",
    "Swedish",
    "Hindi",
    "Vietnamese",
    "Greek",
    "Ukrainian",
    "Brazilian Portuguese",
    "Mandarin",
]

FOREIGN_PHRASES: list[dict[str, str]] = [
    {"lang": "German", "text": "Guten Morgen, wie geht es dir?"},
    {"lang": "German", "text": "Ich hätte gern die Rechnung, bitte."},
    {"lang": "German", "text": "Das ist nicht mein Bier."},
    {"lang": "French", "text": "Je ne sais pas quoi dire."},
    {"lang": "French", "text": "Il fait un temps de chien aujourd'hui."},
    {"lang": "French", "text": "Pourriez-vous parler plus lentement, s'il vous plaît ?"},
    {"lang": "Spanish", "text": "¿Dónde está el baño?"},
    {"lang": "Spanish", "text": "Me encanta esta ciudad, pero hace demasiado calor."},
    {"lang": "Spanish", "text": "No hay mal que por bien no venga."},
    {"lang": "Italian", "text": "Non vedo l'ora di vederti."},
    {"lang": "Italian", "text": "Quanto costa un biglietto per Roma?"},
    {"lang": "Japanese", "text": "お疲れ様でした。"},
    {"lang": "Japanese", "text": "駅まで歩いて何分ですか？"},
    {"lang": "Chinese", "text": "我明天要去北京出差。"},
    {"lang": "Chinese", "text": "这家餐厅的菜又便宜又好吃。"},
    {"lang": "Russian", "text": "Я не понимаю, что ты имеешь в виду."},
    {"lang": "Russian", "text": "Спасибо за помощь, ты меня очень выручил."},
    {"lang": "Portuguese", "text": "Saudade é uma palavra difícil de traduzir."},
    {"lang": "Korean", "text": "감사합니다. 다음에 또 만나요."},
    {"lang": "Dutch", "text": "Ik heb geen idee waar mijn sleutels zijn."},
    {"lang": "Turkish", "text": "Kolay gelsin!"},
    {"lang": "Arabic", "text": "صباح الخير، كيف حالك؟"},
]

# Non-English source sentences for translation requests written in zh / ru / es / de / fr / ja.
ZH_SENTENCES: list[str] = [
    "我们下周一开会讨论这个项目的预算。",
    "请问附近有没有便宜一点的酒店？",
    "这本书让我重新思考了人生的意义。",
    "由于天气原因，航班推迟到明天上午。",
    "感谢您一直以来的支持与信任。",
    "我对海鲜过敏，请不要放虾。",
    "这个软件的最新版本修复了很多问题。",
    "他每天早上六点起床跑步。",
]
RU_SENTENCES: list[str] = [
    "Я буду в офисе после обеда.",
    "Не могли бы вы прислать мне договор ещё раз?",
    "Эта книга изменила мою жизнь.",
    "Мы опоздали на поезд из-за пробок.",
]

# Small slot lists for non-English templates (kept in the language of the template).
ZH_TOPICS: list[str] = [
    "秋天",
    "故乡",
    "月亮",
    "大海",
    "母亲",
    "下雨的夜晚",
    "青春",
    "一只流浪猫",
    "春节",
    "友情",
    "城市的黄昏",
    "第一次离家",
]
ZH_CODE_TASKS: list[str] = [
    "判断一个字符串是否是回文",
    "计算斐波那契数列的第n项",
    "读取CSV文件并统计每一列的平均值",
    "找出列表中重复的元素",
    "实现快速排序",
    "检查一个数是否为质数",
    "把JSON文件转换成Excel表格",
    "统计一段文本中每个单词出现的次数",
    "实现一个简单的LRU缓存",
    "批量重命名文件夹里的图片",
    "合并两个有序数组",
    "生成指定长度的随机密码",
]
ZH_LANGS: list[str] = ["Python", "Java", "C++", "Go", "JavaScript", "Rust"]
RU_TOPICS: list[str] = ["осени", "море", "первой любви", "зимнем лесе", "родном городе", "кошке"]
RU_CODE_TASKS: list[str] = [
    "проверяет, является ли строка палиндромом",
    "считает количество слов в файле",
    "сортирует список словарей по ключу 'age'",
    "находит все простые числа до N",
    "удаляет дубликаты из списка, сохраняя порядок",
    "парсит JSON и выводит все ключи",
]
ES_TOPICS: list[str] = ["el mar", "la lluvia", "mi abuela", "el verano", "la amistad", "un gato"]
# Slot lists of the Russian supplement (RUSSIAN_SUPPLEMENT below); the lists above stay as they
# were so the main generator's draws do not move.
RU_TOPICS_X: list[str] = [
    *RU_TOPICS,
    "дружбе",
    "детстве",
    "весеннем дожде",
    "старом доме",
    "дороге домой",
    "космосе",
    "маме",
    "ночном городе",
]
RU_CODE_TASKS_X: list[str] = [
    *RU_CODE_TASKS,
    "переворачивает связный список",
    "реализует бинарный поиск в отсортированном массиве",
    "считает, сколько раз встречается каждый символ в строке",
    "проверяет, правильно ли расставлены скобки в выражении",
    "реализует простой LRU-кэш",
]
RU_THEMES: list[str] = [
    "Что такое счастье",
    "Роль книг в жизни человека",
    "Мой любимый город",
    "Зачем нужна дружба",
    "Человек и природа",
    "Каким я вижу будущее",
]
RU_BUSINESSES: list[str] = [
    "новой кофейни",
    "магазина велосипедов",
    "онлайн-школы английского",
    "пекарни у дома",
    "службы доставки цветов",
]
RU_ROLES: list[str] = ["пират", "космонавт", "старый библиотекарь", "уличный кот", "рыцарь"]
RU_REVIEWS: list[str] = [
    "Доставка опоздала на три дня, а коробка пришла мятая.",
    "Отличный телефон, батарея держит два дня, всем советую!",
    "Персонал вежливый, но номер был грязный и шумный.",
    "Книга скучная, еле дочитал до середины.",
]
DE_TOPICS: list[str] = ["den Herbst", "das Meer", "Berlin im Winter", "Freundschaft", "Heimweh"]
FR_TOPICS: list[str] = ["l'automne", "la mer", "Paris sous la pluie", "l'enfance", "un chat"]
JA_TOPICS: list[str] = ["桜", "夏祭り", "東京の夜", "ふるさと", "初雪"]

# ---------------------------------------------------------------------------------------------
# Route templates. Each route has families; a family is (name, lang, templates). Template
# fields name slots in SLOTS; "{doc[text]}" style fields index into dict-valued slots.
# ---------------------------------------------------------------------------------------------

Family = tuple[str, str, list[str]]

CREATIVE: list[Family] = [
    (
        "form_topic",
        "en",
        [
            "Write a {form} about {topic}.",
            "write a {tone} {form} about {topic}",
            "Can you write me a {form} about {topic}?",
            "Please compose a short {tone} {form} on the theme of {topic}.",
            "I need a {form} about {topic} for my creative writing class. Keep it under 200 words.",
            "{form} about {topic}, {tone} tone",
            "Could you come up with a {form} about {topic}? Make it {tone}.",
            "My daughter loves {topic}. Write her a {tone} {form} about it, please.",
            "give me a {form} abt {topic} pls",
        ],
    ),
    (
        "story",
        "en",
        [
            "Write a short story where {role} discovers {topic}.",
            "Tell me a {tone} story about {topic}, around 500 words, with a twist ending.",
            "Write the opening paragraph of a novel about {topic}.",
            "Continue this story: 'The door had been locked for thirty years, until tonight.'",
            "Write a dialogue between {role} and a child about {topic}.",
            "Write a scene script where two old friends argue about {topic}.",
        ],
    ),
    (
        "copy",
        "en",
        [
            "Write a catchy slogan for {copy}.",
            "Give me 10 tagline ideas for {copy}.",
            "Write an Instagram caption for {copy}, {tone} and with emojis.",
            "Write a product description for {copy} that makes people want to buy it.",
            "Draft a persuasive email inviting customers to try {copy}.",
            "I'm launching {copy}. Write a short radio ad, 30 seconds.",
            "Write a blog post intro about why everyone should try {copy}.",
        ],
    ),
    (
        "occasion",
        "en",
        [
            "Write a toast for {occasion}. Make it {tone} but not too long.",
            "Help me write a speech for {occasion}, about 3 minutes.",
            "Write a heartfelt card message for {occasion}.",
            "I have to give a speech at {occasion} and I'm terrible at writing. Can you draft "
            "something {tone}?",
        ],
    ),
    (
        "roleplay",
        "en",
        [
            "Imagine you are {role}. Describe your typical morning.",
            "Let's roleplay: you are {role} and I'm a traveller asking for directions.",
            "Pretend you're {role} and tell me a story about {topic}.",
            "Stay in character as {role} and greet me.",
        ],
    ),
    (
        "jokes_lyrics",
        "en",
        [
            "Tell me a joke about {topic}.",
            "Write song lyrics about {topic} in the style of a 90s pop ballad.",
            "Write a rap battle between a cat and a dog.",
            "Write a funny limerick about a programmer who hates Mondays.",
            "Make up a riddle whose answer is {topic}.",
        ],
    ),
    (
        "zh",
        "zh",
        [
            "写一首关于{zh_topic}的诗",
            "请以{zh_topic}为主题写一篇800字左右的散文。",
            "帮我写一个关于{zh_topic}的短篇故事，结局要出人意料。",
            "给我写一段关于{zh_topic}的歌词，风格要轻松一点",
            "写一个适合小朋友听的睡前故事，主角是一只会说话的兔子。",
            "帮我给一家新开的奶茶店想几个广告语",
            "以“{zh_topic}”为题写一首七言绝句",
            "我朋友下个月结婚，帮我写一段婚礼上的祝福致辞。",
        ],
    ),
    (
        "ru",
        "ru",
        [
            "Напиши стихотворение о {ru_topic}.",
            "Придумай короткий рассказ о {ru_topic} со смешной концовкой.",
            "Напиши поздравление с днём рождения для коллеги, в шутливом тоне.",
        ],
    ),
    (
        "es",
        "es",
        [
            "Escribe un poema sobre {es_topic}.",
            "Escríbeme un cuento corto sobre {es_topic} para niños.",
        ],
    ),
    (
        "de",
        "de",
        [
            "Schreib ein Gedicht über {de_topic}.",
            "Schreib eine kurze Geschichte über {de_topic} mit einem überraschenden Ende.",
        ],
    ),
    ("fr", "fr", ["Écris un poème sur {fr_topic}.", "Écris une courte histoire sur {fr_topic}."]),
    (
        "ja",
        "ja",
        ["{ja_topic}についての詩を書いてください。", "{ja_topic}をテーマに短い物語を書いて。"],
    ),
]

TRANSLATION: list[Family] = [
    (
        "en_to_x",
        "en",
        [
            "Translate to {tl}: {en}",
            'translate this into {tl}: "{en}"',
            'How do you say "{en}" in {tl}?',
            "Can you translate the following sentence into {tl}? {en}",
            "Please translate into {tl}, keeping it formal:\n\n{en}",
            'What\'s the {tl} for "{en}"',
            "{en} -> {tl}",
            "I need this in {tl} for a sign at my shop: {en}",
            "how would a native speaker say '{en}' in {tl}",
            'Translate "{en}" to {tl} and give me the pronunciation too.',
            "My friend only speaks {tl}. How do I tell her: {en}",
            "Give me a natural {tl} translation (not word for word): {en}",
            "Say this in {tl}: {en}",
        ],
    ),
    (
        "x_to_en",
        "en",
        [
            "What does '{fp[text]}' mean in English?",
            "Translate from {fp[lang]} to English: {fp[text]}",
            "translate: {fp[text]}",
            'Can you tell me what this means? "{fp[text]}"',
            "Got this message from a {fp[lang]} colleague, what does it say? {fp[text]}",
            "English please: {fp[text]}",
            "Translate this {fp[lang]} sentence into {tl}: {fp[text]}",
            'What is the literal translation of "{fp[text]}" and what does it actually mean?',
        ],
    ),
    (
        "doc",
        "en",
        [
            "Translate this {doc[kind]} into {tl}:\n\n{doc[text]}",
            "Please translate the following into {tl}. Keep names and numbers unchanged.\n\n"
            "{doc[text]}",
            "Can you put this in {tl} for our overseas team?\n{doc[text]}",
            'Translate to {tl}, informal register:\n"{doc[text]}"',
        ],
    ),
    (
        "zh",
        "zh",
        [
            "把这句话翻译成英文：{zh_s}",
            "请将下面的句子翻译成日语：{zh_s}",
            "“{en}”用中文怎么说？",
            "帮我翻译一下：{en}",
            "这句英文是什么意思？“{en}”",
            "请把以下内容翻译成地道的英语：{zh_s}",
            "翻译成法语：{zh_s}",
        ],
    ),
    (
        "ru",
        "ru",
        [
            "Переведи на английский: {ru_s}",
            "Как сказать по-английски «{ru_s}»?",
            "Переведи на русский: {en}",
        ],
    ),
    (
        "es",
        "es",
        [
            "Traduce al inglés: «Mañana tengo una reunión muy importante».",
            "¿Cómo se dice '{en}' en español?",
            "Traduce esto al alemán: {en}",
        ],
    ),
    ("de", "de", ["Übersetze ins Englische: „{fp[text]}“", "Wie sagt man „{en}“ auf Deutsch?"]),
    ("fr", "fr", ["Traduis en anglais : « {fp[text]} »", "Comment dit-on « {en} » en français ?"]),
    ("ja", "ja", ["次の文を英語に翻訳してください：{zh_s}", "「{en}」を日本語に訳して。"]),
]

CODE_GEN: list[Family] = [
    (
        "task",
        "en",
        [
            "Write a {plang} function that {task}.",
            "write me a {plang} script that {task}",
            "Can you write {plang} code that {task}?",
            "I need a {plang} program that {task}. Please add comments.",
            "Implement a function in {plang} that {task}.",
            "{plang}: function that {task}",
            "How do I write a function that {task} in {plang}? Show the code.",
            "Please write a {plang} snippet that {task}, with unit tests.",
            "I'm new to {plang}. Could you write a simple program that {task} and explain it "
            "line by line?",
            "Give me an efficient {plang} implementation that {task}. It should handle large "
            "inputs.",
            "write a func in {plang} that {task} thx",
            "For a homework project I need code that {task}. Use {plang}, no external libraries.",
            "Create a {plang} class that {task}.",
            "Generate {plang} code which {task}, with type annotations.",
        ],
    ),
    (
        "artifact",
        "en",
        [
            "Write {artifact}.",
            "Create {artifact} in {plang}.",
            "Build {artifact}, please include a README section on how to run it.",
            "Can you scaffold {artifact}? Keep it minimal.",
            "I need {artifact}. Show the full code.",
            "Generate boilerplate for {artifact}.",
            "how to make {artifact}, full code pls",
            "We're starting a side project. Could you write {artifact} to get us going?",
        ],
    ),
    (
        "context",
        "en",
        [
            "Add {ctx[ask]} to this {ctx[lang]} code:\n\n{ctx[code]}",
            "Here is my class:\n{ctx[code]}\n\nCan you extend it with {ctx[ask]}?",
            "Given this {ctx[lang]} snippet\n```\n{ctx[code]}\n```\nwrite {ctx[ask]}.",
            "{ctx[code]}\n\nplease implement {ctx[ask]}",
            "Extend the following code with {ctx[ask]}. Keep the existing style.\n\n{ctx[code]}",
        ],
    ),
    (
        "zh",
        "zh",
        [
            "写一个{zh_lang}函数，{zh_task}",
            "用{zh_lang}实现：{zh_task}",
            "请帮我写一段{zh_lang}代码，功能是{zh_task}，并加上注释。",
            "怎么用{zh_lang}{zh_task}？给出完整代码",
            "帮我写个脚本{zh_task}，用{zh_lang}就行",
            "我需要一个{zh_lang}程序来{zh_task}，要求时间复杂度尽量低。",
        ],
    ),
    (
        "ru",
        "ru",
        [
            "Напиши функцию на Python, которая {ru_task}.",
            "Напиши программу на {plang}, которая {ru_task}.",
            "Помоги написать код на Go, который {ru_task}.",
        ],
    ),
    (
        "es",
        "es",
        [
            "Escribe una función en {plang} que calcule el factorial de un número.",
            "Necesito un script en Python que lea un archivo CSV y lo convierta a JSON.",
        ],
    ),
    (
        "de",
        "de",
        [
            "Schreibe eine Python-Funktion, die prüft, ob eine Zahl eine Primzahl ist.",
            "Schreib mir ein {plang}-Programm, das eine Datei zeilenweise einliest.",
        ],
    ),
    (
        "fr",
        "fr",
        [
            "Écris une fonction {plang} qui inverse une chaîne de caractères.",
            "Peux-tu écrire un script Python qui renomme tous les fichiers d'un dossier ?",
        ],
    ),
    (
        "ja",
        "ja",
        [
            "{plang}で文字列が回文かどうかを判定する関数を書いてください。",
            "PythonでCSVファイルを読み込んで平均値を計算するコードを書いて",
        ],
    ),
]

DEBUGGING: list[Family] = [
    (
        "py_traceback",
        "en",
        [
            "{pybug[code]}\n\nI get this error:\n{pybug[err]}\n\nWhy?",
            "here's my code, it throws an error, why?\n\n{pybug[code]}\n\n{pybug[err]}",
            "Getting this when I run my script:\n{pybug[err]}\nHow do I fix it?",
            "Can you help me debug this Python code?\n```python\n{pybug[code]}\n```\nError:\n"
            "```\n{pybug[err]}\n```",
            "{pybug[err]}",
            "what does this error mean: {pybug[err]}",
            "I'm following a tutorial and got stuck. This is my code:\n{pybug[code]}\n"
            "and the output is:\n{pybug[err]}\nWhat am I doing wrong?",
            "fix this pls\n{pybug[code]}\n{pybug[err]}",
            "Why does this fail?\n\n{pybug[code]}",
        ],
    ),
    (
        "js_error",
        "en",
        [
            "{jsbug[code]}\n\nthrows:\n{jsbug[err]}",
            "My React/Node app crashes with: {jsbug[err]}\n\nRelevant code:\n{jsbug[code]}",
            'Why am I getting "{jsbug[err]}"?',
            "help, console says:\n{jsbug[err]}\n\ncode:\n```js\n{jsbug[code]}\n```",
            "How do I fix this error in my JavaScript code? {jsbug[err]}",
            "This worked yesterday and now it doesn't:\n{jsbug[code]}\nError: {jsbug[err]}",
        ],
    ),
    (
        "java_trace",
        "en",
        [
            "Java program crashes:\n{javabug[err]}\n\nCode:\n{javabug[code]}\nWhat's wrong?",
            "Can someone explain this stack trace?\n{javabug[err]}",
            "{javabug[code]}\n\n->\n\n{javabug[err]}\n\nhow to fix",
            "Getting {javabug[err]} on this line: {javabug[code]}",
        ],
    ),
    (
        "native",
        "en",
        [
            "My {nbug[lang]} code:\n{nbug[code]}\n\nCompiler/runtime says:\n{nbug[err]}\n\n"
            "How do I fix it?",
            "{nbug[lang]} question. Why does this give `{nbug[err]}`?\n\n{nbug[code]}",
            "I don't understand this {nbug[lang]} error:\n{nbug[err]}",
            "{nbug[code]}\n\n{nbug[err]}\n\nwhat am i doing wrong",
            "Please explain and fix:\n```\n{nbug[code]}\n```\n```\n{nbug[err]}\n```",
        ],
    ),
    (
        "build",
        "en",
        [
            "My {build[lang]} build fails with:\n{build[err]}\nAny idea?",
            "{build[err]}\n\nhow do i fix this?",
            "CI is red since this morning. Log:\n\n{build[err]}\n\nWhat should I change?",
            "Can you explain this {build[lang]} error and how to resolve it?\n{build[err]}",
        ],
    ),
    (
        "symptom",
        "en",
        [
            "In my {plang} project {symptom}. How do I debug this?",
            "{symptom} - any ideas what could cause this?",
            "Bug: {symptom}. Where should I start looking?",
            "Can you help me find the bug? {symptom} and I've been stuck for hours.",
            "why {symptom}??",
        ],
    ),
    (
        "zh",
        "zh",
        [
            "这段代码报错了，怎么解决？\n{pybug[code]}\n{pybug[err]}",
            "运行的时候出现 {pybug[err]}，是什么原因？",
            "为什么会报这个错：{jsbug[err]}",
            "帮我看看这段代码哪里有问题：\n{nbug[code]}\n报错信息：{nbug[err]}",
            "编译失败，错误如下，求解决办法：\n{build[err]}",
            "我的程序在Linux上正常，在Windows上就崩溃，可能是什么原因？",
        ],
    ),
    (
        "ru",
        "ru",
        [
            "Почему этот код выдаёт ошибку?\n{pybug[code]}\n{pybug[err]}",
            "Что означает ошибка «{jsbug[err]}» и как её исправить?",
        ],
    ),
    (
        "es",
        "es",
        [
            "¿Por qué me da este error? {pybug[err]}",
            "Mi código falla con este error:\n{nbug[err]}\n¿Cómo lo soluciono?",
        ],
    ),
    (
        "de",
        "de",
        [
            "Warum bekomme ich diesen Fehler?\n{pybug[err]}",
            "Mein Build schlägt fehl:\n{build[err]}\nWas kann ich tun?",
        ],
    ),
    ("fr", "fr", ["Pourquoi ce code plante-t-il ?\n{pybug[code]}\n{pybug[err]}"]),
    (
        "ja",
        "ja",
        [
            "このエラーの原因を教えてください：\n{pybug[err]}",
            "コードが動きません。\n{jsbug[code]}\nエラー：{jsbug[err]}",
        ],
    ),
]

# ---------------------------------------------------------------------------------------------
# Data / SQL slots.
# ---------------------------------------------------------------------------------------------

SCHEMAS: list[dict[str, str]] = [
    {
        "schema": "orders(id, customer_id, order_date, total_amount, status)\n"
        "customers(id, name, email, country, created_at)",
        "ask": "the top 5 customers by total spend in 2023",
    },
    {
        "schema": "CREATE TABLE employees (\n  id INT PRIMARY KEY,\n  name VARCHAR(100),\n"
        "  department_id INT,\n  salary DECIMAL(10,2),\n  hire_date DATE\n);",
        "ask": "the highest-paid employee in each department",
    },
    {
        "schema": "page_views(user_id, url, viewed_at)\nusers(id, signup_date, plan)",
        "ask": "daily active users for the last 30 days",
    },
    {
        "schema": "products(id, name, category, price)\norder_items(order_id, product_id, qty)",
        "ask": "products that have never been ordered",
    },
    {
        "schema": "transactions(id, account_id, amount, created_at, type)",
        "ask": "a running balance per account ordered by date",
    },
    {
        "schema": "students(id, name, class)\ngrades(student_id, subject, score)",
        "ask": "the average score per subject and class, only where there are more than 10 "
        "students",
    },
    {
        "schema": "events(id, user_id, event_type, ts)",
        "ask": "the conversion rate from 'signup' to 'purchase' within 7 days",
    },
    {
        "schema": "tickets(id, created_at, closed_at, priority, assignee)",
        "ask": "the median resolution time per priority",
    },
    {
        "schema": "rentals(id, car_id, start_date, end_date, price_per_day)\ncars(id, model, city)",
        "ask": "total revenue per city per month",
    },
    {
        "schema": "posts(id, author_id, created_at)\ncomments(id, post_id, author_id, created_at)",
        "ask": "authors who commented on their own posts",
    },
]

SQL_ASKS: list[str] = [
    "find duplicate emails in a users table",
    "get the second highest salary",
    "delete rows older than 90 days",
    "count orders per month",
    "join three tables and keep rows with no match",
    "pivot monthly sales into columns",
    "find gaps in a sequence of invoice numbers",
    "rank products by sales within each category",
    "select the latest row per user",
    "calculate a 7-day moving average of revenue",
    "update prices by 10% for one category",
    "find customers who ordered in January but not in February",
]

PANDAS_ASKS: list[str] = [
    "group by 'region' and sum 'sales'",
    "drop rows where 'email' is missing",
    "merge two dataframes on 'customer_id' and keep all rows from the left",
    "convert the 'date' column to datetime and resample by week",
    "pivot the dataframe so each product is a column",
    "remove outliers above the 99th percentile in 'amount'",
    "count unique users per day",
    "fill missing values with the column median",
    "split the 'full_name' column into first and last name",
    "plot a histogram of 'age' with 20 bins",
    "read 10 Excel sheets and concatenate them",
    "compute the correlation between 'price' and 'rating'",
]

EXCEL_ASKS: list[str] = [
    "look up a price from another sheet by product code",
    "sum column C only where column A says 'Paid'",
    "count how many cells in B2:B500 contain the word 'late'",
    "highlight duplicate values in column D",
    "calculate the number of working days between two dates",
    "extract the domain from an email address in A2",
    "show 'Overdue' if the date in E2 is before today",
    "make a pivot table of sales by month and region",
    "combine first name in A and last name in B with a space",
    "rank scores in column F from highest to lowest",
]

DATA_TOPICS: list[str] = [
    "monthly sales by region",
    "website traffic over the last year",
    "survey results by age group",
    "customer churn per plan",
    "temperature readings per hour",
    "exam scores by class",
    "stock prices of three companies",
    "support tickets per category",
]

DATA_SQL: list[Family] = [
    (
        "schema",
        "en",
        [
            "Given these tables:\n{schema[schema]}\nWrite a SQL query to get {schema[ask]}.",
            "SQL query to get {schema[ask]}\n\n{schema[schema]}",
            "{schema[schema]}\n\nhow do i get {schema[ask]}? postgres",
            "I have this schema:\n{schema[schema]}\n\nCan you help me write a query for "
            "{schema[ask]}? We use MySQL 8.",
            "Write a query that returns {schema[ask]}. Tables: {schema[schema]}",
            "Using the tables below, what's the most efficient query for {schema[ask]}? Should "
            "I add an index?\n{schema[schema]}",
        ],
    ),
    (
        "sql",
        "en",
        [
            "How do I {sql} in SQL?",
            "sql to {sql}",
            "Write a PostgreSQL query to {sql}.",
            "What's the best way to {sql} in SQLite?",
            "Can you show me a SQL query to {sql}? I'm using SQL Server.",
            "In BigQuery, how can I {sql}?",
            "Explain how to {sql} using a window function.",
        ],
    ),
    (
        "pandas",
        "en",
        [
            "In pandas, how do I {pd}?",
            "pandas: {pd}",
            "I have a dataframe df. How can I {pd}?",
            "Write pandas code to {pd}.",
            "Using polars instead of pandas, how would I {pd}?",
            "My dataframe has columns region, sales, date, email. I need to {pd}. Show the code.",
        ],
    ),
    (
        "excel",
        "en",
        [
            "Excel formula to {xl}",
            "What's the Google Sheets formula to {xl}?",
            "How can I {xl} in Excel?",
            "I'm not good with spreadsheets. Can you give me a formula that will {xl}?",
        ],
    ),
    (
        "analysis",
        "en",
        [
            "What chart should I use to show {dtopic}, and how do I make it in matplotlib?",
            "I have a CSV of {dtopic}. How should I analyse it to find trends?",
            "Make a bar chart of {dtopic} with seaborn.",
            "Design a database schema for {dtopic}.",
            "How should I normalise a table that stores {dtopic}?",
        ],
    ),
    (
        "zh",
        "zh",
        [
            "写一个SQL查询，统计每个月的订单数量",
            "有这些表：\n{schema[schema]}\n请写SQL查询：{schema[ask]}",
            "用pandas怎么按某一列分组然后求和？",
            "Excel里怎么用VLOOKUP从另一个表查找价格？",
            "怎么用SQL找出重复的邮箱地址？",
        ],
    ),
]

# ---------------------------------------------------------------------------------------------
# Text-in routes: rewriting, summarization, extraction, classification.
# ---------------------------------------------------------------------------------------------

ROUGH_SENTENCES: list[str] = [
    "me and him goes to the store yesterday and buyed some apples",
    "We regret to inform you that your application was not succesful at this time.",
    "the meeting is tomorow at 3 dont be late its important",
    "Hey, can u send me the report asap, boss is asking",
    "Our product are the best in the market and everybody love it.",
    "I think that maybe we should possibly consider perhaps changing the plan a little bit.",
    "Due to the fact that the server was down, we were unable to process orders.",
    "i want refund now, the shoes broke after 2 day",
    "Please be advised that the parking lot will be closed for the duration of next week.",
    "its been a crazy week but we finally shipped the new feature, go team!!!",
]

TONES_TARGET: list[str] = [
    "more formal",
    "more casual",
    "friendlier",
    "more concise",
    "more professional",
    "more polite",
    "more confident",
    "less aggressive",
    "simpler, for a 10-year-old",
    "more persuasive",
]

ZH_PASSAGES: list[str] = [
    "据气象台消息，受冷空气影响，本周三起北方大部分地区气温将下降8到10摄氏度，部分地区"
    "有雨夹雪。专家提醒市民注意添衣保暖，出行时注意交通安全。",
    "公司第三季度营收同比增长15%，主要得益于海外市场的扩张。不过，原材料价格上涨导致利润率"
    "略有下降。管理层表示，第四季度将继续控制成本，并加大研发投入。",
    "本次会议决定：一、新版App于下月10日上线；二、市场部负责宣传方案；三、技术部在上线前"
    "完成压力测试。下次会议时间另行通知。",
]
RU_PASSAGE: str = (
    "В понедельник в центре города открылся новый парк площадью пять гектаров. В парке есть "
    "детская площадка, велодорожки и летнее кафе. По словам мэрии, строительство заняло два "
    "года и обошлось в 300 миллионов рублей."
)
RU_PASSAGE_2: str = (
    "По итогам третьего квартала выручка компании выросла на 12% и составила 4,1 млрд рублей. "
    "Основной рост дали онлайн-продажи, тогда как доля розничных магазинов снизилась. "
    "Руководство планирует открыть новый склад в Екатеринбурге и сократить сроки доставки "
    "до двух дней. Совет директоров соберётся 15 ноября, чтобы утвердить бюджет на следующий год."
)

REWRITING: list[Family] = [
    (
        "doc",
        "en",
        [
            "Rewrite this to sound {tone_t}:\n\n{doc[text]}",
            "Paraphrase the following {doc[kind]}:\n{doc[text]}",
            'Can you make this {doc[kind]} {tone_t}? "{doc[text]}"',
            "Proofread this and fix any mistakes:\n{doc[text]}",
            "Shorten this to two sentences without losing meaning:\n{doc[text]}",
            "Rewrite in plain English:\n\n{doc[text]}",
            "Please rephrase this {doc[kind]} so it's {tone_t}. Keep all the facts.\n\n{doc[text]}",
            "{doc[text]}\n\nrewrite ^ {tone_t}",
            "Improve the wording of this {doc[kind]}:\n{doc[text]}",
            "Rewrite this in the passive voice where possible: {doc[text]}",
            "I wrote this {doc[kind]} but it sounds off. Could you polish it and make it "
            "{tone_t}?\n\n{doc[text]}",
            "Make this more concise, aim for half the length:\n{doc[text]}",
        ],
    ),
    (
        "sentence",
        "en",
        [
            "Fix the grammar: {rough}",
            "fix grammar pls: {rough}",
            'Can you correct this sentence? "{rough}"',
            "Rewrite this sentence to be {tone_t}: {rough}",
            "Reword: {rough}",
            'Make this sound {tone_t}: "{rough}"',
            "Give me three alternative ways to say: {rough}",
            "Is this sentence correct? If not, rewrite it: {rough}",
            "Please proofread: {rough}",
            "Turn this into a professional email sentence: {rough}",
            "Rewrite without changing the meaning but using simpler words: {rough}",
            "Paraphrase so it doesn't sound like the original: {rough}",
            "Change the tone to {tone_t}: {rough}",
            "Rewrite this for a LinkedIn post: {rough}",
        ],
    ),
    (
        "zh",
        "zh",
        ["帮我润色一下这段话，让它更正式：{zh_doc}", "请改写下面这段文字，使其更简洁：{zh_doc}"],
    ),
]

SUMMARIZATION: list[Family] = [
    (
        "doc",
        "en",
        [
            "Summarize this:\n\n{doc[text]}",
            "TL;DR: {doc[text]}",
            "Can you give me the key points of this {doc[kind]}?\n{doc[text]}",
            "Summarise the following {doc[kind]} in one sentence:\n{doc[text]}",
            "{doc[text]}\n\nsummarize",
            "Please write a 2-3 line summary of the {doc[kind]} below for my manager.\n\n"
            "{doc[text]}",
            "What's the gist of this? {doc[text]}",
            "Give me a bullet-point summary:\n{doc[text]}",
            "I don't have time to read this {doc[kind]}. What does it say?\n\n{doc[text]}",
            "Condense this into a headline and a one-sentence summary:\n{doc[text]}",
            "Summarize for a 10-year-old:\n{doc[text]}",
            "tldr pls\n{doc[text]}",
            "Give me the main takeaways from this {doc[kind]}: {doc[text]}",
            'Briefly summarize the text below, max 30 words.\n"""\n{doc[text]}\n"""',
            "Here's a {doc[kind]} I received:\n{doc[text]}\n\nCan you sum it up?",
            "Summarise the main points and any action items:\n\n{doc[text]}",
            "Write an executive summary of this {doc[kind]}:\n{doc[text]}",
            "Recap this in 3 bullets:\n{doc[text]}",
            "What are the most important facts in this {doc[kind]}? Short answer please.\n"
            "{doc[text]}",
            "Summarize the following in plain language:\n{doc[text]}",
            "Can you shorten this into a quick summary I can paste into Slack?\n{doc[text]}",
            "Give me a one-line summary: {doc[text]}",
            "Summarise the {doc[kind]} below, then list the people mentioned.\n\n{doc[text]}",
            "what's this {doc[kind]} about? {doc[text]}",
            "Provide a concise abstract of this text:\n{doc[text]}",
        ],
    ),
    (
        "zh",
        "zh",
        [
            "请总结下面这段话的主要内容：\n{zh_doc}",
            "帮我用一句话概括：{zh_doc}",
            "总结一下这段英文的要点：\n{doc[text]}",
            "这段文字讲了什么？请简要概括。\n{zh_doc}",
            "请提炼以下会议纪要的关键信息：{zh_doc}",
        ],
    ),
    ("ru", "ru", ["Кратко перескажи этот текст:\n{ru_doc}", "Сделай краткое резюме: {doc[text]}"]),
    ("es", "es", ["Resume este texto en dos frases:\n{doc[text]}"]),
    ("de", "de", ["Fasse diesen Text kurz zusammen:\n{doc[text]}"]),
    ("fr", "fr", ["Résume ce texte en quelques phrases :\n{doc[text]}"]),
    ("ja", "ja", ["次の文章を要約してください。\n{doc[text]}"]),
]

EXTRACT_FIELDS: list[str] = [
    "all dates",
    "all email addresses",
    "the people's names",
    "all numbers and amounts",
    "company and organisation names",
    "locations",
    "phone numbers",
    "the order or ticket IDs",
    "all deadlines and who owns them",
    "the product names and prices",
]

EXTRACTION: list[Family] = [
    (
        "doc",
        "en",
        [
            "Extract {field} from this text:\n{doc[text]}",
            "From the {doc[kind]} below, pull out {field}.\n\n{doc[text]}",
            "List {field} mentioned here: {doc[text]}",
            "Extract the following fields as JSON (name, email, date, amount):\n{doc[text]}",
            "{doc[text]}\n\nextract {field}",
            "Return a JSON object with keys people, dates, places from this {doc[kind]}:\n"
            "{doc[text]}",
            'Find {field} in the following text and return them as a list.\n"{doc[text]}"',
            "Parse this {doc[kind]} into structured data (CSV row): {doc[text]}",
            "What are {field} in this {doc[kind]}? Only output the values.\n{doc[text]}",
            "Can you pull out {field} from this? {doc[text]}",
            "Identify all named entities (person, org, location, date) in:\n{doc[text]}",
            "Extract key-value pairs from this {doc[kind]}:\n\n{doc[text]}",
            "Please extract {field} and put them in a table.\n{doc[text]}",
            "I need {field} from this {doc[kind]} for our CRM:\n{doc[text]}",
            'Fill this template from the text: {{"sender": ?, "date": ?, "topic": ?}}\n{doc[text]}',
            "Get {field} out of this message, nothing else: {doc[text]}",
            "Extract every action item with owner and due date:\n{doc[text]}",
            "Scan this {doc[kind]} and tell me {field}.\n{doc[text]}",
            "Output {field} from the passage as a JSON array.\n---\n{doc[text]}\n---",
            "Highlight {field} in:\n{doc[text]}",
            "Which {field} appear in the text below?\n{doc[text]}",
            "NER on this text pls: {doc[text]}",
            "Convert this {doc[kind]} into a JSON record with all relevant fields:\n{doc[text]}",
            "Pull {field} into a bulleted list:\n{doc[text]}",
            "Extract the contact details (name, email, phone) from:\n{doc[text]}",
        ],
    ),
    (
        "zh",
        "zh",
        [
            "从下面这段文字中提取所有的日期和金额：\n{zh_doc}",
            "请从这段话里抽取人名、地名和时间，以JSON格式输出：{zh_doc}",
        ],
    ),
]

CLASS_LABELS: list[str] = [
    "positive, negative or neutral",
    "spam or not spam",
    "urgent or not urgent",
    "complaint, question, praise or other",
    "billing, technical, account or shipping",
    "toxic or non-toxic",
    "sports, politics, business, tech or lifestyle",
    "bug report, feature request or question",
    "formal or informal",
]

CLASSIFICATION: list[Family] = [
    (
        "doc",
        "en",
        [
            "Classify the sentiment of this {doc[kind]}: {doc[text]}",
            "Is this {doc[kind]} positive, negative or neutral?\n{doc[text]}",
            "Label this text as {labels}:\n{doc[text]}",
            "Categorize the following message into one of: {labels}.\n\n{doc[text]}",
            "{doc[text]}\n\nsentiment?",
            "What's the topic of this text? Pick one: {labels}.\n{doc[text]}",
            "Is this spam? {doc[text]}",
            "Classify intent: {doc[text]}",
            "Tag this {doc[kind]} with a category ({labels}) and a confidence score.\n{doc[text]}",
            "Rate the sentiment from 1 (very negative) to 5 (very positive):\n{doc[text]}",
            "Which department should handle this ticket? Options: {labels}.\n{doc[text]}",
            "Is the tone of this {doc[kind]} toxic or offensive? Answer yes or no.\n{doc[text]}",
            "Only output the label ({labels}):\n{doc[text]}",
            'Determine whether the following is {labels}: "{doc[text]}"',
            "Classify: {doc[text]}\nLabels: {labels}",
            "Is the customer happy or angry in this {doc[kind]}?\n{doc[text]}",
            "Assign the most fitting label ({labels}) to this text and explain in one line.\n"
            "{doc[text]}",
            "Would you say this {doc[kind]} is positive or negative overall? {doc[text]}",
            "Sort this into one bucket: {labels}. Text: {doc[text]}",
            "Detect the emotion (joy, anger, sadness, fear, surprise) in:\n{doc[text]}",
            "Spam filter check - is this legit or phishing?\n{doc[text]}",
            "What's the urgency level of this {doc[kind]} (low/medium/high)?\n{doc[text]}",
            "Classify this review by star rating 1-5: {doc[text]}",
            "Give me the label only. Categories: {labels}.\n\n{doc[text]}",
            "Is this message about billing, delivery or something else? {doc[text]}",
        ],
    ),
    (
        "batch",
        "en",
        [
            "Classify each of these as {labels}:\n1. {doc[text]}\n2. {doc2[text]}",
            "Label the sentiment of the two texts below.\nA: {doc[text]}\nB: {doc2[text]}",
        ],
    ),
    (
        "zh",
        "zh",
        [
            "判断下面这条评论的情感倾向（正面/负面/中性）：{zh_doc}",
            "这段话属于哪个类别：财经、体育、科技还是社会？{zh_doc}",
        ],
    ),
]

# ---------------------------------------------------------------------------------------------
# Maths and formal maths.
# ---------------------------------------------------------------------------------------------

EQUATIONS: list[str] = [
    "x^2 - 5x + 6 = 0",
    "3x + 7 = 22",
    "2x^2 + 3x - 2 = 0",
    "5(x - 2) = 3x + 4",
    "x/4 + 3 = 10",
    "x^2 = 49",
    "4x - 9 = 2x + 11",
    "x^3 - 8 = 0",
    "2^x = 64",
    "log2(x) = 5",
    "|x - 3| = 7",
    "x^2 + 6x + 9 = 0",
    "sqrt(x + 5) = 4",
    "3x^2 - 12 = 0",
]

FUNCTIONS: list[str] = [
    "x^3 - 4x^2 + 2x",
    "sin(x) * cos(x)",
    "e^(2x)",
    "ln(x^2 + 1)",
    "x * e^x",
    "1/(1 + x^2)",
    "sqrt(3x + 1)",
    "(x^2 + 1)/(x - 1)",
    "tan(x)",
    "x^2 * ln(x)",
    "cos(3x)",
    "5x^4 - 3x + 2",
]

MATH_TOPICS: list[str] = [
    "the derivative",
    "the integral",
    "the second derivative",
    "the limit as x -> 0",
    "the critical points",
    "the Taylor series up to x^3",
]

MATH: list[Family] = [
    (
        "equation",
        "en",
        [
            "Solve {eq}",
            "solve for x: {eq}",
            "How do I solve {eq}? Show steps.",
            "What is x if {eq}?",
            "Can you help me solve this equation: {eq}",
            "Find all real solutions of {eq}.",
            "{eq}, x = ?",
            "My homework says solve {eq} but I keep getting a different answer than the book. "
            "Can you walk me through it?",
        ],
    ),
    (
        "calculus",
        "en",
        [
            "Find {mtopic} of f(x) = {fn}.",
            "What is the derivative of {fn}?",
            "integrate {fn} dx",
            "Compute {mtopic} of {fn}, step by step please.",
            "d/dx {fn}",
            "Evaluate the definite integral of {fn} from 0 to 1.",
        ],
    ),
    (
        "arith",
        "en",
        [
            "What is {n1}% of {n3}?",
            "{n3} divided by {n2}",
            "calculate {n3} * {n2} - {n1}",
            "What's {n1} squared plus {n2} squared?",
            "If I save ${n2} a week, how much will I have after {n1} weeks?",
            "A shirt costs ${n3} and is {n1}% off. What's the sale price?",
            "Convert {n3} km/h to m/s.",
            "What is the average of {n1}, {n2} and {n3}?",
            "How many minutes are there in {n1} days?",
        ],
    ),
    (
        "word_problem",
        "en",
        [
            "A train leaves at 9:00 travelling {n2} km/h. Another leaves the same station at "
            "10:00 at {n3} km/h. When does the second catch up?",
            "A rectangle has perimeter {n3} cm and its length is {n1} cm more than its width. "
            "Find its area.",
            "A recipe for 4 people uses {n1}0 g of butter. How much do I need for {n2} people?",
            "If {n1} workers build a wall in {n2} days, how long do {n3} workers take?",
            "I invest ${n3}00 at {n1}% annual interest compounded monthly. How much after 5 years?",
            "A tank fills in {n1} hours and drains in {n2} hours. With both open, how long to "
            "fill it?",
        ],
    ),
    (
        "prob_stats",
        "en",
        [
            "What's the probability of getting at least one six in {n1} rolls of a die?",
            "If I draw 2 cards from a standard deck, what's the probability both are hearts?",
            "Find the mean, median and standard deviation of: {n1}, {n2}, {n3}, {n1}, 17, 42.",
            "A test is 95% accurate and the disease affects 1 in {n3} people. If I test "
            "positive, what's the chance I'm actually sick?",
            "How many ways can {n1} people sit around a round table?",
            "What is the expected value of a game where you win ${n2} with probability 0.3 and "
            "lose ${n1} otherwise?",
            "Compute a 95% confidence interval for a mean of {n3} with sd {n2} and n = 100.",
            "How many 5-card hands contain exactly two aces?",
        ],
    ),
    (
        "zh",
        "zh",
        [
            "求解方程 {eq}",
            "求函数 f(x) = {fn} 的导数",
            "计算 {fn} 的不定积分",
            "一个长方形的周长是{n3}厘米，长比宽多{n1}厘米，求面积。",
            "掷两枚骰子，点数之和为7的概率是多少？",
            "{n3}的{n1}%是多少？",
            "小明有{n3}元，买了{n1}本书，每本{n2}元，还剩多少钱？",
        ],
    ),
    (
        "ru",
        "ru",
        [
            "Решите уравнение {eq}",
            "Найдите производную функции {fn}.",
            "Сколько будет {n3} умножить на {n2}?",
        ],
    ),
    ("es", "es", ["Resuelve la ecuación {eq}", "¿Cuál es la derivada de {fn}?"]),
    ("de", "de", ["Löse die Gleichung {eq}.", "Berechne das Integral von {fn}."]),
    ("fr", "fr", ["Résous l'équation {eq}.", "Calcule la dérivée de {fn}."]),
    ("ja", "ja", ["方程式 {eq} を解いてください。", "{fn} を微分して。"]),
]

PROOF_CLAIMS: list[str] = [
    "the square root of 2 is irrational",
    "there are infinitely many primes",
    "the sum of the first n odd numbers is n^2",
    "1 + 2 + ... + n = n(n+1)/2",
    "every finite group of prime order is cyclic",
    "a continuous function on a closed interval is bounded",
    "the composition of two injective functions is injective",
    "n^3 - n is divisible by 6 for every integer n",
    "a graph is bipartite iff it has no odd cycle",
    "the intersection of two subgroups is a subgroup",
    "2^n > n^2 for all n >= 5",
    "every convergent sequence is a Cauchy sequence",
    "the set of real numbers is uncountable",
    "the product of two odd integers is odd",
    "a tree with n vertices has n - 1 edges",
    "gcd(a, b) divides a - b",
    "the empty set is a subset of every set",
    "every bounded monotone sequence converges",
]

LEAN_STMTS: list[str] = [
    "theorem add_comm' (a b : Nat) : a + b = b + a",
    "∀ n : ℕ, 0 + n = n",
    "theorem two_mul_eq (n : ℕ) : 2 * n = n + n",
    "lemma list_rev_rev (l : List α) : l.reverse.reverse = l",
    "∀ a b : ℤ, (a + b)^2 = a^2 + 2*a*b + b^2",
    "theorem even_add (a b : ℕ) (ha : Even a) (hb : Even b) : Even (a + b)",
]

FORMAL_MATH: list[Family] = [
    (
        "prove",
        "en",
        [
            "Prove that {claim}.",
            "prove {claim}",
            "Show that {claim}.",
            "Give a rigorous proof that {claim}.",
            "Prove by induction that {claim}.",
            "Prove by contradiction that {claim}.",
            "Can you write a formal proof that {claim}? Justify every step.",
            "How would I prove that {claim}? I need it for my real analysis homework.",
            "Demonstrate rigorously that {claim}.",
            "Is the following statement true? If so prove it, otherwise give a counterexample: "
            "{claim}.",
            "Write a proof that {claim}, suitable for a first-year undergraduate course.",
            "I tried to prove that {claim} but my argument has a gap. Give me a complete proof.",
            "Give two different proofs that {claim}.",
            "Prove the lemma: {claim}.",
            "Show rigorously, using the epsilon-delta definition where needed, that {claim}.",
            "Outline and then fully write out a proof that {claim}.",
            "Prove or disprove: {claim}.",
        ],
    ),
    (
        "lean",
        "en",
        [
            "Formalise this in Lean 4 and prove it: {lean}",
            "Write a Lean proof of `{lean}`.",
            "How do I prove {lean} in Lean? My `simp` call doesn't close the goal.",
            "Translate the statement '{claim}' into Lean 4 and prove it with Mathlib.",
            "Prove in Coq that {claim}.",
            "Fill in the sorry:\n```lean\n{lean} := by\n  sorry\n```",
            "Write an Isabelle/HOL proof that {claim}.",
            "What tactic sequence proves `{lean}` in Lean 4?",
        ],
    ),
    (
        "zh",
        "zh",
        ["证明：√2 是无理数。", "用数学归纳法证明 1+2+…+n = n(n+1)/2", "证明素数有无穷多个。"],
    ),
    ("ru", "ru", ["Докажите, что существует бесконечно много простых чисел."]),
]

# ---------------------------------------------------------------------------------------------
# Reasoning, high-stakes, greeting, FAQ lookup and general.
# ---------------------------------------------------------------------------------------------

SYSTEMS: list[str] = [
    "a rate limiter for a distributed API",
    "a URL shortener handling 10k writes per second",
    "a notification service for email, SMS and push",
    "a real-time chat app for 1M users",
    "a job queue with retries and dead-lettering",
    "a multi-tenant SaaS billing system",
    "a news feed like Twitter's timeline",
    "a distributed cache in front of Postgres",
    "a ride-sharing dispatch system",
    "an audit log that can't be tampered with",
    "a search autocomplete service",
    "a file sync service like Dropbox",
    "a feature flag system",
    "an event-sourced order service",
]

TECH_CHOICES: list[str] = [
    "Kafka or RabbitMQ",
    "Postgres or MongoDB",
    "microservices or a modular monolith",
    "Kubernetes or plain VMs",
    "GraphQL or REST",
    "Redis or Memcached",
    "DynamoDB or Cassandra",
    "serverless or containers",
    "React Native or native iOS/Android",
    "gRPC or REST",
]

PLAN_GOALS: list[str] = [
    "migrate a 2 TB MySQL database to Postgres with minimal downtime",
    "launch a new product in three countries in six months with a team of five",
    "reduce our cloud bill by 30% without hurting latency",
    "move our team from monthly releases to continuous delivery",
    "split a monolith into services without stopping feature work",
    "prepare for a 10x traffic spike on Black Friday",
]

REASONING: list[Family] = [
    (
        "design",
        "en",
        [
            "Design {system}.",
            "How would you design {system}? Discuss trade-offs.",
            "System design question: {system}. Walk me through the architecture, data model and "
            "scaling bottlenecks.",
            "We need {system}. What components would you use and why?",
            "design {system}, consider failure modes",
            "I have a system design interview tomorrow. How should I approach designing {system}?",
            "What are the consistency vs availability trade-offs when building {system}?",
        ],
    ),
    (
        "choice",
        "en",
        [
            "Should we use {choice} for {system}?",
            "{choice} for {system}? Pros and cons please.",
            "Compare {choice} for a team of 6 engineers building {system}.",
            "We're a startup with 3 devs. {choice}? Reason it through.",
            "What would make you pick one over the other: {choice}?",
            "Our CTO wants to switch and I disagree. Weigh up {choice} for {system}.",
        ],
    ),
    (
        "plan",
        "en",
        [
            "Plan how to {goal}. Break it into phases and risks.",
            "We want to {goal}. What's the best strategy?",
            "Give me a step-by-step plan to {goal}, considering what could go wrong.",
            "What are the hardest parts if we try to {goal}?",
        ],
    ),
    (
        "puzzle",
        "en",
        [
            "Three boxes are labelled apples, oranges and mixed, and all labels are wrong. You "
            "may take one fruit from one box. How do you relabel them?",
            "Alice is taller than Bob, Bob is taller than Carol, and Dan is shorter than Carol "
            "but taller than Eve. Who is the second shortest?",
            "You have 8 balls and one is heavier. With a balance scale, what's the minimum "
            "number of weighings to find it? Explain.",
            "A farmer must cross a river with a wolf, a goat and a cabbage. Work out the steps.",
            "If every A is a B and some B are C, does it follow that some A are C? Reason step "
            "by step.",
            "Five houses, five owners, each with a different pet. Given the clues below, who "
            "owns the fish? 1) The Brit lives in the red house. 2) The Swede keeps dogs. 3) The "
            "green house is left of the white one.",
            "I have {n2} meeting requests and only {n1} free slots this week, with priorities and "
            "dependencies. How should I reason about what to drop?",
            "Two doors, two guards, one always lies and one always tells the truth. What single "
            "question do you ask?",
        ],
    ),
    (
        "zh",
        "zh",
        [
            "设计一个分布式限流系统，说明不同方案的取舍。",
            "我们的消息队列应该用Kafka还是RabbitMQ？请分析一下利弊。",
            "如何设计一个支持千万用户的短链接服务？",
            "微服务和单体架构，对一个五人团队来说哪个更合适？",
        ],
    ),
]

MED_QS: list[str] = [
    "Can I take ibuprofen while on blood thinners like warfarin?",
    "I've had chest pain and numbness in my left arm for an hour, what should I do?",
    "Is it safe to drink alcohol while taking metronidazole?",
    "My 2-year-old has a fever of 39.5°C and a rash that doesn't fade when pressed. Is this "
    "serious?",
    "What's the maximum daily dose of paracetamol for an adult with liver problems?",
    "Can I stop taking my antidepressants cold turkey?",
    "I'm pregnant, is it safe to take this migraine medication (sumatriptan)?",
    "My blood test shows HbA1c of 7.2%. Do I have diabetes and what should I do?",
    "Can I mix St John's Wort with my birth control pills?",
    "I found a lump in my breast, how worried should I be?",
]
LEGAL_QS: list[str] = [
    "My landlord is keeping my whole deposit for 'wear and tear'. Is that legal?",
    "Can my employer fire me for being pregnant?",
    "I signed a non-compete clause. Can I work for a competitor in the same city?",
    "Is a verbal agreement legally binding for selling a car?",
    "My boss hasn't paid me overtime for three months. What are my rights?",
    "Can I be evicted without a court order if I'm two months behind on rent?",
    "What happens if I die without a will and have two kids from different marriages?",
    "Someone is using my photos on their website without permission. Can I sue?",
    "Should I sign this contract clause that makes me liable for all damages, unlimited?",
    "I got a speeding ticket abroad, do I have to pay it?",
]
FIN_QS: list[str] = [
    "Should I put my $50k savings into index funds or pay off my mortgage early?",
    "Is it a good idea to take a loan to invest in crypto?",
    "How much tax will I owe if I sell my shares after 11 months?",
    "Should I move my pension into a high-risk fund at 58?",
    "Can I deduct my home office on my taxes as a freelancer?",
    "I inherited $200,000. How should I invest it?",
    "Is it smart to cash out my 401(k) to pay off credit card debt?",
    "Should I buy or rent a house given current interest rates?",
    "My company offers stock options, should I exercise them now or wait?",
    "How do I report foreign income on my tax return?",
]

HIGH_STAKES: list[Family] = [
    (
        "medical",
        "en",
        [
            "{med}",
            "Medical question: {med}",
            "I know you're not a doctor but {med}",
            "Quick question for my mum: {med}",
            "{med} Please be specific, I'm worried.",
            "urgent - {med}",
            "My doctor is unavailable until Monday. {med}",
            "Asking for a friend: {med}",
            "Is this dangerous? {med}",
        ],
    ),
    (
        "legal",
        "en",
        [
            "{legal}",
            "Legal question (UK): {legal}",
            "I live in California. {legal}",
            "{legal} I can't afford a lawyer right now.",
            "Need advice: {legal}",
            "What does the law say here? {legal}",
            "My tenancy/employment situation: {legal}",
            "Germany-based question: {legal}",
            "Before I pay for a lawyer, can you tell me: {legal}",
        ],
    ),
    (
        "financial",
        "en",
        [
            "{fin}",
            "Financial advice please: {fin}",
            "{fin} I'm 34 with no other debt.",
            "Tax question: {fin}",
            "I'm thinking about this and need a real answer: {fin}",
            "My advisor says yes, my gut says no. {fin}",
            "Be honest: {fin}",
            "Retirement planning: {fin}",
        ],
    ),
    (
        "zh",
        "zh",
        [
            "我在吃华法林，可以同时吃布洛芬吗？",
            "房东不退押金，我该怎么维权？",
            "我有20万存款，应该买基金还是提前还房贷？",
        ],
    ),
]

GREET_HI: list[str] = [
    "hi",
    "hello",
    "hey",
    "hey there",
    "good morning",
    "good evening",
    "yo",
    "hiya",
    "howdy",
    "hello!",
    "hi :)",
    "sup",
    "morning!",
    "greetings",
    "hi hi",
    "heyyy",
    "good afternoon",
]
GREET_FOLLOW: list[str] = [
    "how are you?",
    "how's it going?",
    "what's up?",
    "who made you?",
    "what's your name?",
    "are you a bot?",
    "nice to meet you",
    "thanks for the help earlier!",
    "hope you're well",
    "how's your day?",
    "what can you do?",
    "long time no see",
    "are you there?",
    "who am I talking to?",
    "you're awesome",
    "thanks a lot!",
    "good night!",
]

GREETING: list[Family] = [
    (
        "hi",
        "en",
        [
            "{hi}",
            "{hi}, {greet}",
            "{hi}! {greet}",
            "{greet}",
            "{hi} {hi}",
            "{hi}, just wanted to say {greet}",
            "thanks!",
            "thank you so much",
            "thx",
            "ok thanks, bye",
            "cheers mate",
            "you're the best, thanks",
            "lol nice",
            "good bot",
            "who created you?",
            "are you ChatGPT?",
            "how old are you?",
            "do you have feelings?",
            "what should I call you?",
            "{hi}! {greet} :)",
            "Hi, I'm new here. {greet}",
            "{greet} {hi}",
            "see you tomorrow!",
            "have a nice weekend",
            "ty so much, that really helped",
            "hello? anyone there?",
        ],
    ),
    ("zh", "zh", ["你好", "你好！你是谁？", "谢谢你！", "早上好", "你好呀，最近怎么样？", "晚安"]),
    ("ru", "ru", ["привет", "спасибо!", "Привет, как дела?", "Доброе утро!"]),
    ("es", "es", ["hola", "¡Hola! ¿Qué tal?", "muchas gracias"]),
    ("de", "de", ["hallo", "Danke schön!", "Guten Morgen!"]),
    ("fr", "fr", ["bonjour", "merci beaucoup", "Salut, ça va ?"]),
    ("ja", "ja", ["こんにちは", "ありがとう！", "おはようございます"]),
]

FAQ_QS: list[str] = [
    "what are your opening hours?",
    "how do I reset my password?",
    "what's the capital of Peru?",
    "how do I cancel my subscription?",
    "do you ship to Canada?",
    "what is your refund policy?",
    "how can I change my email address?",
    "where can I find my invoice?",
    "how long does delivery take?",
    "what's the capital of Australia?",
    "who wrote Hamlet?",
    "how many ounces in a cup?",
    "when was the Eiffel Tower built?",
    "how tall is Mount Everest?",
    "what currency does Japan use?",
    "is there a student discount?",
    "how do I contact customer support?",
    "can I change my delivery address after ordering?",
    "what payment methods do you accept?",
    "how do I enable two-factor authentication?",
    "what time zone is New York in?",
    "how many days are in a leap year?",
    "do you have a mobile app?",
    "what's the boiling point of water in Fahrenheit?",
    "how do I update my billing info?",
    "where is your head office?",
    "what's the population of Canada?",
    "who is the CEO of Microsoft?",
    "how do I delete my account?",
    "what is the speed of light?",
]

FAQ_LOOKUP: list[Family] = [
    (
        "q",
        "en",
        [
            "{faq}",
            "Quick question: {faq}",
            "Hi, {faq}",
            "{faq} thanks",
            "can you tell me {faq}",
            "Sorry to bother you, {faq}",
            "FAQ: {faq}",
            "One more thing - {faq}",
            "I was wondering, {faq}",
            "hey {faq}",
            "Please tell me: {faq}",
            "Do you know {faq}",
            "{faq} (short answer please)",
            "help: {faq}",
            "need to know asap, {faq}",
            "Hello! {faq} I couldn't find it on the website.",
            "I'm a new customer. {faq}",
            "simple one: {faq}",
            "{faq}?",
            "q: {faq}",
            "Just checking, {faq}",
            "Could you let me know {faq}",
            "Good afternoon, {faq}",
            "{faq} I looked but couldn't find it.",
            "Tell me {faq}",
        ],
    ),
    (
        "zh",
        "zh",
        [
            "怎么重置密码？",
            "你们几点关门？",
            "秘鲁的首都是哪里？",
            "可以寄到国外吗？",
            "怎么取消订阅？",
        ],
    ),
]

GEN_QS: list[str] = [
    "why is the sky blue?",
    "how do vaccines work?",
    "any tips for a job interview?",
    "how can I sleep better?",
    "what's a good way to learn a new language?",
    "why do cats purr?",
    "how do I stop procrastinating?",
    "explain how the internet works",
    "what should I cook for dinner tonight?",
    "how do airplanes stay in the air?",
    "what are some good books for a long flight?",
    "how do I make friends in a new city?",
    "why do we dream?",
    "what's the difference between weather and climate?",
    "how do I keep my houseplants alive?",
    "is it better to run in the morning or evening?",
    "what's a fun weekend activity with kids?",
    "how does a credit score work in general?",
    "why do leaves change colour in autumn?",
    "how can I be more productive working from home?",
    "what's the best way to pack for a week-long trip?",
    "how do solar panels work?",
    "what causes earthquakes?",
    "how do I start journaling?",
    "explain black holes simply",
    "how do I get better at public speaking?",
    "what's the history of pizza?",
    "how do I choose a good laptop?",
    "what does a product manager do?",
    "how do bees make honey?",
]

GENERAL: list[Family] = [
    (
        "q",
        "en",
        [
            "{gen}",
            "Can you explain {gen}",
            "I've always wondered: {gen}",
            "{gen} keep it simple",
            "Random question - {gen}",
            "my kid asked me {gen} and I didn't know",
            "ELI5: {gen}",
            "{gen} I'd love a detailed answer.",
            "hey, {gen}",
            "What do you think, {gen}",
            "Give me some advice: {gen}",
            "Can you help? {gen}",
            "I'm curious, {gen}",
            "Quick one: {gen}",
            "{gen} a few bullet points is fine",
            "Please explain in plain terms: {gen}",
            "Thinking out loud - {gen}",
            "Tell me {gen}",
            "So {gen}",
            "ok so {gen}",
            "I read something about this today. {gen}",
            "Could you give me an overview: {gen}",
            "honest question: {gen}",
            "{gen} Thanks in advance!",
            "Any thoughts? {gen}",
        ],
    ),
    (
        "zh",
        "zh",
        [
            "{zh_gen}",
            "请问，{zh_gen}",
            "我一直很好奇，{zh_gen}",
            "简单解释一下：{zh_gen}",
            "{zh_gen}能详细说说吗？",
            "问个问题：{zh_gen}",
        ],
    ),
    (
        "ru",
        "ru",
        [
            "Почему небо голубое?",
            "Как научиться лучше спать?",
            "Посоветуй, что почитать в отпуске.",
        ],
    ),
    ("es", "es", ["¿Por qué soñamos?", "¿Cómo puedo hacer amigos en una ciudad nueva?"]),
    ("de", "de", ["Warum ist der Himmel blau?", "Hast du Tipps für ein Vorstellungsgespräch?"]),
    ("fr", "fr", ["Pourquoi les chats ronronnent-ils ?", "Comment mieux dormir la nuit ?"]),
    ("ja", "ja", ["空はなぜ青いの？", "よく眠るためのコツを教えて。"]),
]

ZH_GEN_QS: list[str] = [
    "为什么天空是蓝色的？",
    "怎样才能提高睡眠质量？",
    "面试的时候有什么技巧？",
    "疫苗是怎么起作用的？",
    "周末带孩子去哪里玩比较好？",
    "怎么克服拖延症？",
    "学习一门新语言最好的方法是什么？",
    "为什么秋天树叶会变黄？",
    "一个人旅行有什么好处？",
    "怎么养好绿萝？",
    "地震是怎么产生的？",
    "怎么在新城市交到朋友？",
    "为什么人会做梦？",
    "太阳能电池板是怎么发电的？",
    "怎样提高在家办公的效率？",
]

# ---------------------------------------------------------------------------------------------
# Slot table and route table.
# ---------------------------------------------------------------------------------------------


def _int_slot(lo: int, hi: int) -> Any:
    def pick(rng: random.Random) -> str:
        return str(rng.randint(lo, hi))

    return pick


SLOTS: dict[str, Any] = {
    "topic": CW_TOPICS,
    "form": CW_FORMS,
    "copy": CW_COPY,
    "occasion": CW_OCCASIONS,
    "role": CW_ROLES,
    "tone": CW_TONES,
    "en": EN_PHRASES,
    "tl": TARGET_LANGS,
    "fp": FOREIGN_PHRASES,
    "zh_s": ZH_SENTENCES,
    "ru_s": RU_SENTENCES,
    "plang": PROG_LANGS,
    "task": CODE_TASKS,
    "artifact": CODE_ARTIFACTS,
    "ctx": CODE_CONTEXTS,
    "pybug": PY_BUGS,
    "jsbug": JS_BUGS,
    "javabug": JAVA_BUGS,
    "nbug": NATIVE_BUGS,
    "build": BUILD_ERRORS,
    "symptom": BUG_SYMPTOMS,
    "schema": SCHEMAS,
    "sql": SQL_ASKS,
    "pd": PANDAS_ASKS,
    "xl": EXCEL_ASKS,
    "dtopic": DATA_TOPICS,
    "doc": PASSAGES,
    "doc2": PASSAGES,
    "rough": ROUGH_SENTENCES,
    "tone_t": TONES_TARGET,
    "zh_doc": ZH_PASSAGES,
    "ru_doc": [RU_PASSAGE],
    "field": EXTRACT_FIELDS,
    "labels": CLASS_LABELS,
    "eq": EQUATIONS,
    "fn": FUNCTIONS,
    "mtopic": MATH_TOPICS,
    "n1": _int_slot(2, 12),
    "n2": _int_slot(13, 60),
    "n3": _int_slot(61, 480),
    "claim": PROOF_CLAIMS,
    "lean": LEAN_STMTS,
    "system": SYSTEMS,
    "choice": TECH_CHOICES,
    "goal": PLAN_GOALS,
    "med": MED_QS,
    "legal": LEGAL_QS,
    "fin": FIN_QS,
    "hi": GREET_HI,
    "greet": GREET_FOLLOW,
    "faq": FAQ_QS,
    "gen": GEN_QS,
    "zh_gen": ZH_GEN_QS,
    "zh_topic": ZH_TOPICS,
    "zh_task": ZH_CODE_TASKS,
    "zh_lang": ZH_LANGS,
    "ru_topic": RU_TOPICS,
    "ru_topic_x": RU_TOPICS_X,
    "ru_task_x": RU_CODE_TASKS_X,
    "ru_theme": RU_THEMES,
    "ru_business": RU_BUSINESSES,
    "ru_role": RU_ROLES,
    "ru_review": RU_REVIEWS,
    "ru_doc_x": [RU_PASSAGE, RU_PASSAGE_2],
    "ru_task": RU_CODE_TASKS,
    "es_topic": ES_TOPICS,
    "de_topic": DE_TOPICS,
    "fr_topic": FR_TOPICS,
    "ja_topic": JA_TOPICS,
}

ROUTES: dict[str, list[Family]] = {
    "creative_writing": CREATIVE,
    "translation": TRANSLATION,
    "code_generation": CODE_GEN,
    "debugging": DEBUGGING,
    "data_sql": DATA_SQL,
    "rewriting": REWRITING,
    "summarization": SUMMARIZATION,
    "extraction": EXTRACTION,
    "classification": CLASSIFICATION,
    "math": MATH,
    "formal_math": FORMAL_MATH,
    "reasoning": REASONING,
    "high_stakes": HIGH_STAKES,
    "greeting": GREETING,
    "faq_lookup": FAQ_LOOKUP,
    "general": GENERAL,
}

# Routes that get ~15% non-English prompts; the rest only use whatever non-English families
# they have at their natural (small) share.
MULTILINGUAL_SHARE: dict[str, float] = {
    "creative_writing": 0.15,
    "code_generation": 0.15,
    "debugging": 0.15,
    "math": 0.15,
    "translation": 0.15,
    "summarization": 0.15,
    "general": 0.15,
    "rewriting": 0.03,
    "extraction": 0.03,
    "classification": 0.03,
    "formal_math": 0.03,
    "high_stakes": 0.03,
    "data_sql": 0.03,
    "reasoning": 0.03,
    "greeting": 0.1,
    "faq_lookup": 0.03,
}

# Relative weight of each non-English language when one is drawn (Chinese most often).
LANG_WEIGHTS: dict[str, float] = {
    "zh": 0.5,
    "ru": 0.12,
    "es": 0.1,
    "de": 0.1,
    "fr": 0.1,
    "ja": 0.08,
}

# Small routes: fraction of per_route to generate.
ROUTE_SCALE: dict[str, float] = {"greeting": 0.5, "faq_lookup": 0.5, "general": 0.5}

# ---------------------------------------------------------------------------------------------
# Russian supplement (off by default: the shipped model was trained without it; models/README.md,
# "Russian templates"). The main templates hold 75 Russian prompts, so nearly all Cyrillic text
# the models saw was xQuAD's reading comprehension and the static tier sends Russian maths and
# poems to `extraction`. These templates put Russian in every route. They are drawn by their own
# generator after the main rows, so turning them on leaves every main row byte-identical.
# ---------------------------------------------------------------------------------------------

RUSSIAN_SUPPLEMENT: dict[str, list[str]] = {
    "creative_writing": [
        "Сочини сказку на ночь для пятилетнего ребёнка о {ru_topic_x}.",
        "Напиши текст песни о {ru_topic_x}, лёгкий и весёлый.",
        "Напиши эссе на тему «{ru_theme}» примерно на 500 слов.",
        "Набросай сюжет научно-фантастического рассказа о {ru_topic_x}.",
        "Напиши тост на свадьбу лучшего друга: трогательный, но не слишком длинный.",
        "Придумай три рекламных слогана для {ru_business}.",
        "Сочини хокку о {ru_topic_x}.",
        "Напиши четверостишие для новогодней открытки бабушке.",
        "Придумай диалог двух старых друзей, которые спорят о {ru_topic_x}.",
        "Напиши речь для выпускного вечера в школе, вдохновляющую и с юмором.",
        "Представь, что ты {ru_role}, и расскажи историю о {ru_topic_x}.",
        "Напиши пост для блога о {ru_topic_x} в дружелюбном тоне.",
        "Напиши стихотворение о {ru_topic_x}.",
    ],
    "math": [
        "Вычислите неопределённый интеграл от {fn}.",
        "Поезд проехал {n3} км за {n1} часа. Какова его средняя скорость?",
        "Найдите площадь прямоугольного треугольника с катетами {n1} и {n2} см.",
        "Какова вероятность, что при {n1} бросках кубика хотя бы раз выпадет шестёрка?",
        "Сколько процентов составляет {n1} от {n3}?",
        "Оля купила {n1} тетрадей по {n2} рублей и ручку за {n3} рублей. Сколько она заплатила?",
        "Решите систему уравнений: x + y = {n3}, x - y = {n1}.",
        "Одна труба наполняет бассейн за {n1} часов, другая за {n2} часов. За сколько часов его "
        "наполнят обе трубы?",
        "Вклад {n3}000 рублей под {n1}% годовых. Сколько будет на счёте через 3 года?",
        "Упростите выражение (a + b)^2 - (a - b)^2.",
        "Сколько существует способов рассадить {n1} человек за круглым столом?",
        "Найдите наименьшее натуральное число, которое при делении на 3, 4 и 5 даёт в остатке 2.",
        "Сколько диагоналей у выпуклого двенадцатиугольника?",
        "Мама в три раза старше дочери, а через десять лет будет старше в два раза. Сколько лет "
        "дочери сейчас?",
        "Периметр квадрата равен {n3} см. Найдите его площадь.",
        "Сколько нулей стоит в конце числа сто факториал?",
        "Найдите наибольший общий делитель чисел {n3} и {n2} и объясните, как вы его нашли.",
        "Какова вероятность, что из трёх случайных людей хотя бы двое родились в один день недели?",
    ],
    "formal_math": [
        "Докажите, что корень из 2 — иррациональное число.",
        "Докажите по индукции, что 1 + 2 + ... + n = n(n + 1)/2.",
        "Сформулируйте и докажите теорему Лагранжа для конечных групп.",
        "Докажите, что произведение двух нечётных чисел нечётно.",
        "Докажите, что любое натуральное число больше единицы раскладывается на простые множители.",
        "Докажите, что среди любых пяти целых чисел найдутся три с суммой, делящейся на три.",
        "Докажите, что медианы треугольника пересекаются в одной точке.",
        "Сформулируйте и докажите теорему о промежуточном значении непрерывной функции.",
        "Запишите на Lean 4 утверждение, что сумма двух чётных чисел чётна, и докажите его.",
    ],
    "code_generation": [
        "Напиши функцию на Python, которая {ru_task_x}.",
        "Напиши программу на {plang}, которая {ru_task_x}.",
        "Как на JavaScript написать функцию, которая {ru_task_x}?",
        "Реализуй на C++ алгоритм, который {ru_task_x}, с комментариями.",
        "Нужен класс на Java, который {ru_task_x}. Покажи код и пример использования.",
    ],
    "debugging": [
        "Программа падает с ошибкой {pybug[err]}. Вот код:\n{pybug[code]}\nЧто не так?",
        "Помогите найти баг, функция работает неправильно:\n{pybug[code]}",
        "Что означает ошибка «{jsbug[err]}» и как её исправить?",
    ],
    "summarization": [
        "Кратко перескажи этот текст:\n{ru_doc_x}",
        "Выдели три главные мысли этого текста:\n{ru_doc_x}",
        "Сократи текст до двух предложений:\n{ru_doc_x}",
    ],
    "translation": ["Переведи на английский: {ru_s}", "Переведи на русский: {en}"],
    "rewriting": [
        "Перепиши этот текст более официальным языком:\n{ru_doc_x}",
        "Исправь ошибки и сделай фразу вежливее: {ru_s}",
    ],
    "extraction": ["Выпиши из текста все числа и даты:\n{ru_doc_x}"],
    "classification": [
        "Определи тональность отзыва (положительный или отрицательный): «{ru_review}»"
    ],
    "data_sql": [
        "Напиши SQL-запрос, который выводит десять самых дорогих заказов за прошлый месяц.",
        "Как в pandas сгруппировать таблицу по городу и посчитать среднюю зарплату?",
    ],
    "reasoning": [
        "Сравни плюсы и минусы перехода нашей компании с монолита на микросервисы.",
        "Спланируй по шагам выход небольшого интернет-магазина на рынок Казахстана.",
        "Оцени риски запуска нового продукта без бета-тестирования и предложи план действий.",
    ],
    "high_stakes": [
        "У меня давящая боль в груди отдаёт в левую руку. Что мне делать?",
        "Могу ли я расторгнуть договор аренды досрочно без штрафа?",
    ],
    "faq_lookup": ["Какая столица Австралии?", "Сколько дней в високосном году?"],
    "general": [
        "Чем вирус отличается от бактерии?",
        "Как подготовиться к собеседованию на первую работу?",
        "Почему осенью желтеют листья?",
        "Какой ноутбук лучше выбрать для учёбы?",
    ],
}
# Rows per route the supplement aims for (fewer when its templates run dry). 281 rows in all
# since build 20261201f (161 before: too few to move the static head off `extraction` for
# Cyrillic; models/README).
RUSSIAN_SUPPLEMENT_ROWS: dict[str, int] = {
    "creative_writing": 90,
    "math": 90,
    "formal_math": 25,
    "code_generation": 30,
    "debugging": 30,
    "summarization": 20,
    "translation": 10,
    "reasoning": 15,
    "general": 15,
}

# ---------------------------------------------------------------------------------------------
# Generator.
# ---------------------------------------------------------------------------------------------

_FORMATTER = string.Formatter()


class _Filler(Mapping[str, Any]):
    """Lazily picks one value per slot name for a single template fill."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._cache: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key not in self._cache:
            source = SLOTS[key]
            if callable(source):
                value = source(self._rng)
            else:
                value = self._rng.choice(source)
                while self._clashes(key, value):
                    value = self._rng.choice(source)
            self._cache[key] = value
        return self._cache[key]

    def _clashes(self, key: str, value: Any) -> bool:
        """True when value would make the fill nonsensical (same doc twice, X into X)."""
        if key == "doc2":
            return value is self._cache.get("doc")
        if key == "tl" and "fp" in self._cache:
            return self._cache["fp"]["lang"] in value or value in self._cache["fp"]["lang"]
        if key == "fp" and "tl" in self._cache:
            return value["lang"] in self._cache["tl"] or self._cache["tl"] in value["lang"]
        return False

    def __iter__(self) -> Any:
        return iter(SLOTS)

    def __len__(self) -> int:
        return len(SLOTS)


def _fill(template: str, rng: random.Random) -> str:
    return template.format_map(_Filler(rng))


def _typo(word: str, rng: random.Random) -> str:
    """Swap two adjacent inner letters, or drop one, like a fast typist would."""
    i = rng.randint(1, len(word) - 3)
    if rng.random() < 0.5:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + word[i + 1 :]


def _casualize(prompt: str, rng: random.Random) -> str:
    """Make the first line look like quick chat input: lowercase, no final '.', maybe a typo."""
    head, sep, rest = prompt.partition("\n")
    if not head.isascii() or any(c in head for c in "(){}[];=<>_`"):
        return prompt
    head = head.lower()
    if head.endswith(".") or (head.endswith("?") and rng.random() < 0.5):
        head = head[:-1]
    words = head.split(" ")
    candidates = [i for i, w in enumerate(words) if w.isalpha() and len(w) >= 5]
    if candidates and rng.random() < 0.6:
        j = rng.choice(candidates)
        words[j] = _typo(words[j], rng)
    return " ".join(words) + sep + rest


def _template_ids(route: str) -> list[tuple[str, str, str]]:
    """All (template_id, lang, template) triples of a route."""
    out: list[tuple[str, str, str]] = []
    for family, lang, templates in ROUTES[route]:
        for i, tpl in enumerate(templates):
            out.append((f"{route}/{family}/{i}", lang, tpl))
    return out


def _route_prompts(route: str, n: int, rng: random.Random, seen: set[str]) -> list[dict]:
    triples = _template_ids(route)
    by_lang: dict[str, list[tuple[str, str, str]]] = {}
    for t in triples:
        by_lang.setdefault(t[1], []).append(t)
    english = by_lang.pop("en")
    share = MULTILINGUAL_SHARE.get(route, 0.0) if by_lang else 0.0
    rows: list[dict] = []

    def draw(pool: list[tuple[str, str, str]], max_misses: int) -> bool:
        """Add one new prompt from pool; False once max_misses duplicates came in a row."""
        for _ in range(max_misses):
            tid, lang, tpl = rng.choice(pool)
            prompt = _fill(tpl, rng)
            if lang == "en" and rng.random() < 0.15:
                prompt = _casualize(prompt, rng)
            prompt = prompt.strip()
            if prompt not in seen:
                seen.add(prompt)
                rows.append({"prompt": prompt, "route": route, "lang": lang, "template": tid})
                return True
        return False

    # Non-English first, up to its quota; a language whose templates run dry drops out and
    # the others (mostly Chinese) take its share.
    quota = round(n * share)
    live = sorted(by_lang)
    while len(rows) < quota and live:
        lang = rng.choices(live, [LANG_WEIGHTS.get(x, 0.05) for x in live])[0]
        if not draw(by_lang[lang], 40):
            live.remove(lang)
    while len(rows) < n and draw(english, 200):
        pass
    rng.shuffle(rows)
    return rows


def synthetic_prompts(
    seed: int = 20261201, per_route: int = 600, *, russian_supplement: bool = False
) -> list[dict]:
    """Template-generated training prompts, ``per_route`` per route (half for small routes).

    Deterministic for a given ``seed``; prompts are unique across the whole result. Each row is
    ``{"prompt", "route", "lang", "template"}``; ``template`` ("route/family/index") groups
    near-duplicates so that train/test splits can hold out whole templates. A route whose
    templates cannot yield enough distinct prompts returns fewer. ``russian_supplement`` appends
    RUSSIAN_SUPPLEMENT's rows (measured, not in the shipped model: models/README.md).
    """
    rng = random.Random(seed)
    seen: set[str] = set()
    rows: list[dict] = []
    for route in ROUTES:
        n = max(1, round(per_route * ROUTE_SCALE.get(route, 1.0)))
        rows.extend(_route_prompts(route, n, rng, seen))
    if russian_supplement:
        rows += _supplement(random.Random(f"{seed}:ru-supplement"), seen)
    return rows


def _supplement(rng: random.Random, seen: set[str]) -> list[dict]:
    """RUSSIAN_SUPPLEMENT's rows, after the main ones and from their own generator."""
    rows: list[dict] = []
    for route, templates in RUSSIAN_SUPPLEMENT.items():
        want, got, misses = RUSSIAN_SUPPLEMENT_ROWS.get(route, len(templates)), 0, 0
        while got < want and misses < 200:
            i = rng.randrange(len(templates))
            prompt = _fill(templates[i], rng).strip()
            if prompt in seen:
                misses += 1
                continue
            seen.add(prompt)
            rows.append({"prompt": prompt, "route": route, "lang": "ru",
                         "template": f"{route}/ru_supplement/{i}"})  # fmt: skip
            got, misses = got + 1, 0
    return rows
