"""An embedded sample corpus that curate generates itself (no network), for the demo and smoke tests.

Documents are assembled from a few hand-written sentences per language, with a seed: several languages,
web boilerplate and junk, near-duplicates (copies with a few words changed), short and long documents.
"""

from __future__ import annotations

import random

import pyarrow as pa

SENTENCES: dict[str, list[str]] = {
    "en": [
        "The river rose quickly after three days of heavy rain in the valley.",
        "Most of the farmers had already moved their animals to higher ground.",
        "Local officials opened the school gym as a shelter for families who had to leave their homes.",
        "Volunteers brought blankets, bottled water and hot meals throughout the night.",
        "By the next morning the water had begun to fall, but the roads were still closed.",
        "Engineers say the old bridge will need a careful inspection before anyone can use it again.",
        "The library is planning a new reading program for children during the summer holidays.",
        "Each week a different author will visit and read from a favourite book.",
        "Researchers measured how much energy the small solar panels produced over a whole year.",
        "They found that cleaning the panels once a month made a noticeable difference.",
        "The recipe calls for flour, butter, a little sugar and a pinch of salt.",
        "Let the dough rest in a cool place for at least an hour before you roll it out.",
    ],
    "de": [
        "Der Fluss stieg nach drei Tagen starken Regens im Tal schnell an.",
        "Die meisten Bauern hatten ihre Tiere bereits auf höher gelegene Weiden gebracht.",
        "Die Gemeinde öffnete die Turnhalle der Schule als Unterkunft für Familien.",
        "Freiwillige brachten die ganze Nacht über Decken, Wasser und warme Mahlzeiten.",
        "Am nächsten Morgen sank das Wasser wieder, doch die Straßen blieben gesperrt.",
        "Die Bibliothek plant für die Sommerferien ein neues Leseprogramm für Kinder.",
        "Jede Woche wird eine andere Autorin aus ihrem Lieblingsbuch vorlesen.",
        "Forscher haben gemessen, wie viel Energie die kleinen Solarmodule in einem Jahr erzeugen.",
        "Der Teig sollte mindestens eine Stunde an einem kühlen Ort ruhen.",
        "Für das Rezept braucht man Mehl, Butter, etwas Zucker und eine Prise Salz.",
    ],
    "fr": [
        "La rivière a monté rapidement après trois jours de fortes pluies dans la vallée.",
        "La plupart des agriculteurs avaient déjà conduit leurs bêtes vers les hauteurs.",
        "La mairie a ouvert le gymnase de l'école pour accueillir les familles évacuées.",
        "Des bénévoles ont apporté des couvertures, de l'eau et des repas chauds toute la nuit.",
        "Le lendemain matin, l'eau commençait à baisser, mais les routes restaient fermées.",
        "La bibliothèque prépare un nouveau programme de lecture pour les enfants cet été.",
        "Chaque semaine, un auteur différent viendra lire un extrait de son livre préféré.",
        "Les chercheurs ont mesuré l'énergie produite par les petits panneaux solaires pendant un an.",
        "Laissez reposer la pâte au frais pendant au moins une heure avant de l'étaler.",
        "La recette demande de la farine, du beurre, un peu de sucre et une pincée de sel.",
    ],
    "es": [
        "El río creció rápidamente después de tres días de lluvias intensas en el valle.",
        "La mayoría de los agricultores ya habían llevado sus animales a zonas más altas.",
        "El ayuntamiento abrió el gimnasio de la escuela como refugio para las familias.",
        "Los voluntarios llevaron mantas, agua y comida caliente durante toda la noche.",
        "A la mañana siguiente el agua empezó a bajar, pero las carreteras seguían cerradas.",
        "La biblioteca prepara un nuevo programa de lectura para los niños durante el verano.",
        "Cada semana un autor distinto vendrá a leer un fragmento de su libro favorito.",
        "Los investigadores midieron cuánta energía produjeron los pequeños paneles solares en un año.",
        "Deje reposar la masa en un lugar fresco durante al menos una hora.",
        "La receta lleva harina, mantequilla, un poco de azúcar y una pizca de sal.",
    ],
    "it": [
        "Il fiume è salito rapidamente dopo tre giorni di piogge intense nella valle.",
        "La maggior parte degli agricoltori aveva già portato gli animali più in alto.",
        "Il comune ha aperto la palestra della scuola come rifugio per le famiglie.",
        "I volontari hanno portato coperte, acqua e pasti caldi per tutta la notte.",
        "La biblioteca sta preparando un nuovo programma di lettura per i bambini.",
        "Lasciate riposare l'impasto in un luogo fresco per almeno un'ora.",
        "I ricercatori hanno misurato quanta energia producono i piccoli pannelli solari in un anno.",
    ],
    "ru": [
        "После трёх дней сильных дождей река в долине быстро поднялась.",
        "Большинство фермеров уже перегнали скот на возвышенности.",
        "Местные власти открыли школьный спортзал как убежище для семей.",
        "Волонтёры всю ночь приносили одеяла, воду и горячую еду.",
        "На следующее утро вода начала спадать, но дороги всё ещё были закрыты.",
        "Библиотека готовит новую программу чтения для детей на летние каникулы.",
        "Исследователи измерили, сколько энергии небольшие солнечные панели вырабатывают за год.",
    ],
    "zh": [
        "山谷里连续下了三天大雨，河水迅速上涨。",
        "大多数农民已经把牲畜赶到了地势较高的地方。",
        "当地政府开放了学校的体育馆，作为受灾家庭的临时避难所。",
        "志愿者们整夜送来毛毯、饮用水和热饭。",
        "第二天早上水位开始下降，但道路仍然封闭。",
        "图书馆正在为孩子们准备一个新的暑期阅读计划。",
        "研究人员测量了小型太阳能电池板一年内产生的电量。",
    ],
    "ja": [
        "谷では三日間の大雨の後、川の水位が急に上がった。",
        "ほとんどの農家はすでに家畜を高い場所へ移していた。",
        "市は学校の体育館を避難所として開放した。",
        "ボランティアが一晩中、毛布や水、温かい食事を運んだ。",
        "翌朝には水が引き始めたが、道路はまだ通行止めだった。",
        "図書館は夏休みに向けて子ども向けの新しい読書プログラムを準備している。",
        "研究者たちは小さな太陽光パネルが一年間に生み出す電力を測定した。",
    ],
}

BOILERPLATE = [
    "Home | About us | Contact | Privacy policy",
    "We use cookies to improve your experience. By continuing to browse you accept our cookie policy.",
    "Please enable JavaScript to view this page.",
    "Copyright 2024 All rights reserved.",
    "Share on Facebook Share on Twitter Share by email",
    "Sign up for our newsletter",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
]
JUNK = [
    "$$$ BEST PRICE $$$ click here click here click here !!!",
    "buy cheap buy cheap buy cheap buy cheap buy cheap buy cheap",
    "0x3f 0x41 0x00 0xff 0x12 0x9a 0x77 0x01 0x42 0x42 0x42",
    "#### #### #### #### #### ####",
]


def _document(rng: random.Random, lang: str, long: bool) -> str:
    """Sentences of one language in a random order, none repeated (repetition is what junk documents do)."""
    pool = SENTENCES[lang]
    chosen = rng.sample(pool, len(pool) if long else rng.randint(4, min(8, len(pool))))
    paragraphs, start = [], 0
    while start < len(chosen):
        size = rng.randint(2, 4)
        paragraphs.append(" ".join(chosen[start : start + size]))
        start += size
    return "\n\n".join(paragraphs)


def _near_duplicate(rng: random.Random, text: str) -> str:
    words = text.split(" ")
    for _ in range(max(1, len(words) // 40)):
        words[rng.randrange(len(words))] = rng.choice(["indeed", "also", "still", "then"])
    return " ".join(words)


def generate(num_docs: int = 2_000, seed: int = 0) -> pa.Table:
    """A deterministic multilingual sample: columns id, text, source, url."""
    rng = random.Random(seed)
    langs = list(SENTENCES)
    weights = [6, 2, 2, 2, 1, 1, 1, 1]
    rows: list[tuple[str, str]] = []
    while len(rows) < num_docs:
        roll = rng.random()
        if roll < 0.70:
            lang = rng.choices(langs, weights)[0]
            text = _document(rng, lang, long=rng.random() < 0.3)
            source = "web" if rng.random() < 0.6 else "books"
            if rng.random() < 0.3:  # boilerplate around real content, as scraped pages have
                text = "\n".join([rng.choice(BOILERPLATE), text, rng.choice(BOILERPLATE)])
        elif roll < 0.80 and rows:
            text, source = _near_duplicate(rng, rng.choice(rows)[0]), "web"
        elif roll < 0.88:
            text, source = "\n".join(rng.choice(BOILERPLATE) for _ in range(rng.randint(2, 6))), "web"
        elif roll < 0.95:
            text, source = "\n".join(rng.choice(JUNK) for _ in range(rng.randint(1, 5))), "web"
        else:
            text, source = rng.choice(SENTENCES[rng.choice(langs)]), "forum"  # short documents
        rows.append((text, source))
    return pa.table(
        {
            "id": [f"sample-{i:06d}" for i in range(num_docs)],
            "text": [t for t, _ in rows],
            "source": [s for _, s in rows],
            "url": [f"https://example.org/{s}/{i}" for i, (_, s) in enumerate(rows)],
        }
    )
