"""The built-in general-ability items: written for this project, small enough for any CPU, used when
no real test set is named (``--general builtin``). Their prompts are the project's own
(simulator/probes/general/tasks.py, the tasks without a paper source)."""

# A held text written for this project (plain encyclopaedic prose, no edited facts in it).
BUILTIN_TEXT = (
    "The river rises in the hills to the north of the town and flows south through a wide valley. "
    "For centuries it carried timber and grain to the coast, and the mills along its banks gave the "
    "town its first industry. In the nineteenth century a railway was built beside the river, and "
    "the mills were replaced by workshops that made tools and machinery. Today most of the old "
    "buildings are offices or flats, and a path along the water is popular with walkers and cyclists. "
    "The town library keeps maps and letters from the period, and a small museum describes how the "
    "people who lived here worked, what they ate and how they spent their holidays. Every summer a "
    "market fills the main square, where farmers sell fruit, cheese and bread from the valley."
)

BUILTIN_QA = [
    {"question": "What is the capital of France?", "answers": ["Paris"]},
    {"question": "How many days are there in a week?", "answers": ["seven", "7"]},
    {"question": "What colour is the sky on a clear day?", "answers": ["blue"]},
    {"question": "What is the largest ocean on Earth?", "answers": ["Pacific", "Pacific Ocean", "the Pacific Ocean"]},
    {"question": "Which planet is closest to the Sun?", "answers": ["Mercury"]},
    {"question": "What is the opposite of hot?", "answers": ["cold"]},
    {"question": "How many legs does a spider have?", "answers": ["eight", "8"]},
    {"question": "What is the capital of Japan?", "answers": ["Tokyo"]},
]

BUILTIN_SENTIMENT = [
    {"text": "A wonderful film, full of warmth and humour.", "label": 1},
    {"text": "I loved every minute of it.", "label": 1},
    {"text": "The best meal I have had in years.", "label": 1},
    {"text": "Beautifully acted and deeply moving.", "label": 1},
    {"text": "A dull, tedious mess from start to finish.", "label": 0},
    {"text": "I want those two hours of my life back.", "label": 0},
    {"text": "The food was cold and the service was rude.", "label": 0},
    {"text": "Badly written and badly acted.", "label": 0},
]

BUILTIN_REASONING = [
    {"question": "Tom has 3 apples and buys 4 more. How many apples does he have?", "answer": "7"},
    {"question": "A box holds 6 eggs. How many eggs are in 5 boxes?", "answer": "30"},
    {"question": "Anna had 20 dollars and spent 8. How many dollars does she have left?", "answer": "12"},
    {"question": "There are 12 cookies shared equally by 4 children. How many does each child get?", "answer": "3"},
]

BUILTIN_SUMMARIZATION = [
    {"dialogue": "A: Are we still meeting at six?\nB: Yes, at the cafe near the station.\nA: Great, see you there.",
     "summary": "A and B will meet at six at the cafe near the station."},
    {"dialogue": "A: I lost my keys again.\nB: Did you check your coat pocket?\nA: Found them, thanks!",
     "summary": "A lost the keys and found them in the coat pocket."},
    {"dialogue": "A: Can you buy milk on your way home?\nB: Sure, anything else?\nA: Some bread too.",
     "summary": "B will buy milk and bread on the way home."},
]

BUILTIN_PIQA = [
    {"goal": "To dry wet hands,", "sol1": "rub them with a clean towel.", "sol2": "dip them in a bucket of water.", "label": 0},
    {"goal": "To keep ice cream from melting,", "sol1": "leave it in the sun.", "sol2": "put it in the freezer.", "label": 1},
    {"goal": "To light a dark room,", "sol1": "switch on a lamp.", "sol2": "close the curtains.", "label": 0},
    {"goal": "To cut a sheet of paper in half,", "sol1": "fold it and tear it with a spoon of soup.", "sol2": "use a pair of scissors.", "label": 1},
]

BUILTIN_FLUENCY_PROMPTS = [
    "The history of the city begins",
    "My favourite season of the year is",
    "Scientists recently discovered that",
]
