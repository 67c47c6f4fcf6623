"""Synthetic products for the historical logs: hidden traits, and texts whose wording carries them.

A product's traits (positioning, seasonality, gift appeal, ad buzz, launch or steady staple, what
complements it) set its structural-market parameters; its description, ad creatives and bundle
partners express those traits through a varied vocabulary. Two disjoint vocabularies exist: ``train`` (used for training
and the held-out product set) and ``paraphrase`` (wording never seen in training, for the
paraphrased held-out set). Traits interact with context in the market (price sensitivity depends on
positioning, holiday uplift on gift appeal), so a model that ignores the text cannot do well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Vocabulary = Literal["train", "paraphrase"]


@dataclass(frozen=True)
class Noun:
    name: str
    category: str
    base_price: float
    peak_week: int  # week of year when the product type sells best
    consumable: bool
    complements: tuple[str, ...]  # catalogue items that go with it
    features: tuple[str, ...]


NOUNS: tuple[Noun, ...] = (
    Noun("wool coat", "apparel", 150, 50, False, ("knitted scarf", "leather gloves"), ("water-resistant shell", "recycled lining", "detachable hood")),
    Noun("rain jacket", "apparel", 110, 44, False, ("compact umbrella", "waterproofing spray"), ("taped seams", "packable design", "adjustable cuffs")),
    Noun("running shoes", "apparel", 120, 14, False, ("cushioned sports socks", "gel insoles"), ("breathable mesh", "responsive foam", "grippy outsole")),
    Noun("linen shirt", "apparel", 60, 26, False, ("polarised sunglasses", "canvas belt"), ("relaxed fit", "breathable weave", "mother-of-pearl buttons")),
    Noun("swimsuit", "apparel", 55, 27, False, ("striped beach towel", "straw sun hat"), ("chlorine-resistant fabric", "quick-dry lining", "UV protection")),
    Noun("cashmere sweater", "apparel", 140, 49, False, ("knitted scarf", "garment care kit"), ("two-ply yarn", "ribbed cuffs", "crew neck")),
    Noun("scented candle", "home", 25, 51, False, ("brass candle snuffer", "long safety matches"), ("soy wax", "cotton wick", "amber glass jar")),
    Noun("cast-iron skillet", "home", 40, 48, False, ("silicone handle cover", "seasoning oil"), ("pre-seasoned surface", "even heating", "oven-safe")),
    Noun("throw blanket", "home", 60, 2, False, ("linen cushion cover", "wicker storage basket"), ("chunky knit", "machine washable", "oversized")),
    Noun("air purifier", "home", 180, 12, False, ("replacement HEPA filter", "smart plug"), ("HEPA filtration", "quiet night mode", "air quality sensor")),
    Noun("patio string lights", "home", 35, 24, False, ("outdoor timer plug", "solar power bank"), ("shatterproof bulbs", "weatherproof cable", "warm white glow")),
    Noun("ceramic vase", "home", 45, 19, False, ("dried flower bundle", "flower scissors"), ("hand-thrown", "matte glaze", "watertight finish")),
    Noun("coffee beans", "food", 16, 2, True, ("hand burr grinder", "ceramic pour-over dripper"), ("single origin", "small-batch roast", "tasting notes of cocoa")),
    Noun("barbecue sauce", "food", 7, 27, True, ("grill brush", "smoky spice rub"), ("smoked paprika", "molasses", "small-batch recipe")),
    Noun("hot chocolate mix", "food", 10, 51, True, ("stoneware mug", "marshmallow tin"), ("Belgian cocoa", "creamy blend", "resealable tin")),
    Noun("olive oil", "food", 18, 20, True, ("aged balsamic vinegar", "oil pourer"), ("cold-pressed", "early harvest", "peppery finish")),
    Noun("green tea", "food", 12, 15, True, ("stainless tea infuser", "glass teapot"), ("loose leaf", "first flush", "grassy aroma")),
    Noun("chocolate truffles", "food", 25, 51, True, ("greeting card", "ribbon gift bag"), ("hand-rolled", "ganache centre", "cocoa dusted")),
    Noun("vitamin C serum", "beauty", 35, 18, True, ("jade facial roller", "hydrating toner"), ("15% vitamin C", "hyaluronic acid", "fragrance-free")),
    Noun("sunscreen", "beauty", 20, 27, True, ("after-sun gel", "waterproof pouch"), ("SPF 50", "reef-safe formula", "non-greasy")),
    Noun("hand cream", "beauty", 12, 50, True, ("cuticle oil", "cotton gloves"), ("shea butter", "fast-absorbing", "light scent")),
    Noun("perfume", "beauty", 80, 51, True, ("travel atomiser", "scented body lotion"), ("floral notes", "long-lasting", "glass bottle")),
    Noun("shampoo bar", "beauty", 14, 30, True, ("bamboo soap dish", "wooden hair brush"), ("plastic-free", "sulfate-free", "travel-friendly")),
    Noun("lip balm set", "beauty", 10, 51, True, ("makeup pouch", "mini hand mirror"), ("beeswax", "tinted shades", "SPF 15")),
    Noun("wireless earbuds", "electronics", 100, 48, False, ("USB-C fast charger", "silicone earbud case"), ("noise cancellation", "30-hour battery", "water-resistant")),
    Noun("smartwatch", "electronics", 200, 1, False, ("sport watch strap", "magnetic charging dock"), ("built-in GPS", "heart-rate tracking", "10-day battery")),
    Noun("portable speaker", "electronics", 80, 26, False, ("padded carrying case", "USB-C fast charger"), ("360-degree sound", "waterproof", "12-hour playtime")),
    Noun("e-reader", "electronics", 130, 51, False, ("folio e-reader cover", "reading light"), ("glare-free screen", "weeks of battery", "adjustable warm light")),
    Noun("action camera", "electronics", 250, 24, False, ("128 GB memory card", "helmet mounting kit"), ("4K video", "image stabilisation", "waterproof housing")),
    Noun("tablet", "electronics", 330, 34, False, ("folio keyboard case", "active stylus"), ("11-inch display", "all-day battery", "128 GB storage")),
)
CATEGORY_PEAK = {"apparel": 50, "home": 50, "food": 51, "beauty": 51, "electronics": 48}

# Phrases per trait level: (train vocabulary, paraphrase vocabulary); the two never share a phrase.
POSITIONING = {
    "budget": (
        ["affordable", "budget-friendly", "great-value", "no-frills", "low-cost", "cheap and cheerful", "value-priced",
         "entry-level", "basic", "discount", "thrifty", "cost-saving", "price-conscious"],
        ["wallet-friendly", "inexpensive", "economical", "bargain-priced"],
    ),
    "mainstream": (
        ["classic", "reliable", "everyday", "well-made", "practical", "solid", "versatile", "trusted", "all-purpose",
         "familiar", "dependable-looking", "sturdy", "regular"],
        ["dependable", "standard", "trusty", "sensible"],
    ),
    "premium": (
        ["premium", "high-end", "expertly crafted", "superior quality", "refined", "elevated", "finely made",
         "quality-first", "upscale", "sophisticated", "professional-grade", "artisanal", "best-in-class"],
        ["top-tier", "upmarket", "first-rate", "deluxe"],
    ),
    "luxury": (
        ["luxury", "exclusive", "designer", "prestige", "haute", "luxurious", "lavishly finished", "high-fashion",
         "collector's", "ultra-premium", "sumptuous", "elite", "extravagant"],
        ["opulent", "lavish", "couture", "ultra-exclusive"],
    ),
}
SEASONAL = {
    True: (
        ["perfect for {season}", "a {season} essential", "made for the {season} months", "built for {season}",
         "designed for {season} days", "a {season} favourite", "for the {season} season", "when {season} comes",
         "the best of {season}", "seasonal, for {season}"],
        ["your go-to when {season} arrives", "at its best in {season}", "the {season} must-have"],
    ),
    False: (
        ["for use all year round", "a year-round staple", "for every season", "useful any time of year",
         "not tied to any season", "all-season", "for every month of the year", "timeless in any season",
         "365 days a year", "never out of season"],
        ["whatever the month", "twelve months a year", "in any weather, any month"],
    ),
}
GIFT = {
    "high": (
        ["a perfect gift", "beautifully gift-boxed", "the present everyone loves", "a gift they will treasure",
         "the ideal present", "gift-ready packaging", "a gift to remember", "made to be given", "a special-occasion gift",
         "the gift of the year"],
        ["ideal for giving", "wrapped and ready to give", "a treat for someone special"],
    ),
    "medium": (
        ["a nice gift idea", "also makes a thoughtful present", "good as a small gift", "works as a gift too",
         "a decent present", "fine as a gift", "sometimes given as a gift", "an easy gift option"],
        ["could be given as a gift", "a pleasant surprise for friends"],
    ),
    "low": (
        ["for your own use", "a practical buy for yourself", "simple and functional", "a personal essential",
         "bought for yourself", "for everyday personal needs", "a functional purchase", "for self use only"],
        ["bought for personal use", "strictly utilitarian", "for yourself, not for gifting"],
    ),
}
BUZZ = {
    "high": (
        ["trending on social media", "the viral hit of the season", "everyone is talking about it", "a social media sensation",
         "hyped by influencers", "the talk of the town", "going viral", "sold out twice already", "the hottest launch",
         "a must-see on every feed"],
        ["the buzz of the moment", "an online sensation", "all over your feed"],
    ),
    "medium": (
        ["well reviewed", "popular with customers", "a steady favourite", "good ratings", "customers recommend it",
         "a reliable best-seller", "four-star reviews", "liked by many"],
        ["liked by shoppers", "rated well online", "a solid crowd-pleaser"],
    ),
    "low": (
        ["understated", "quietly dependable", "a discreet choice", "little-known", "without fanfare", "a quiet classic",
         "under the radar", "plain and simple"],
        ["low-key", "no hype, just the basics", "modest and unassuming"],
    ),
}
DEMAND = {  # how buyers arrive: a new product diffusing through its market, or a staple's steady weekly pool
    "launch": (
        ["new this season", "just launched", "a brand-new release", "the newest arrival", "launching now",
         "a fresh debut", "newly released", "a first-edition launch"],
        ["hot off the press", "an all-new introduction", "freshly unveiled"],
    ),
    "staple": (
        ["a steady seller week after week", "a household staple", "always in demand", "bought again and again",
         "restocked every week", "a staple people keep buying", "steady demand, week in and week out", "a repeat buy for regulars"],
        ["a constant in every home", "the kind of thing people rebuy without thinking", "an evergreen basic"],
    ),
    # A limited drop diffuses faster than a launch of the same buzz (collectors buy on release). Its lists
    # are as long as the launch lists, so a drop draws from the generator exactly as a launch does.
    "drop": (
        ["a limited-edition release", "a limited drop", "a numbered limited run", "gone for good once sold out",
         "a one-time release", "strictly limited quantities", "a collectible limited edition",
         "released in a single limited batch"],
        ["available for a short window only", "a capsule run that will not be restocked",
         "made in a fixed, finite number"],
    ),
}
STAPLE_SHARE = 0.2  # share of synthetic products sold to a constant weekly pool (the rest diffuse, Bass)
LAUNCH_SAYS_SO = 0.5  # share of launch (and drop) descriptions that say so (staples always say they are)
DROP_SHARE = 0.1  # share of synthetic launches that are limited drops
DROP_INNOVATION = 2.5  # a drop's Bass p over a launch's of the same buzz
DROP_IMITATION = 1.2  # a drop's Bass q over a launch's of the same buzz
HOOKS = {  # creative style -> base click-through rate, (train, paraphrase) openers
    "urgency": (0.022, ["Only a few left:", "Last chance:", "Selling fast:", "Ends tonight:", "Almost gone:", "Final hours:"],
                ["Hurry, stocks are low:", "Don't miss out:"]),
    "benefit": (0.016, ["Discover", "Meet", "Experience", "Introducing", "Try", "See why you need"],
                ["Say hello to", "Get to know"]),
    "social": (0.019, ["Thousands love", "Join the fans of", "Rated five stars:", "Customers adore", "Best-selling:", "Loved by many:"],
               ["Shoppers rave about", "Everyone's choosing"]),
    "discount": (0.009, ["Save today on", "Use code SAVE10 on", "Money off", "Sale price on", "Cheaper now:", "Half price on"],
                 ["Deal of the week:", "Reduced price on"]),
}
BRAND_A = ["Nor", "Lum", "Ver", "Kai", "Ost", "Bel", "Mar", "Tor", "Ela", "Fen", "Ash", "Riv", "Sol", "Zen", "Cor"]
BRAND_B = ["dale", "ora", "ix", "wood", "ly", "ford", "ena", "mont", "vik", "era", "stone", "ine", "hart", "lo"]

POSITION_PRICE = {"budget": 0.55, "mainstream": 1.0, "premium": 1.7, "luxury": 3.2}
POSITION_BETA = {"budget": 4.6, "mainstream": 3.6, "premium": 2.8, "luxury": 2.0}
POSITION_MARKET = {"budget": 1.6, "mainstream": 1.0, "premium": 0.55, "luxury": 0.25}
GIFT_APPEAL = {"high": 1.1, "medium": 0.5, "low": 0.1}
BUZZ_RESPONSE = {"high": 1.6, "medium": 1.0, "low": 0.6}
BUZZ_IMITATION = {"high": 0.5, "medium": 0.36, "low": 0.24}
BUZZ_INNOVATION = {"high": 0.04, "medium": 0.02, "low": 0.012}  # hype also brings early buyers


@dataclass(frozen=True)
class ProductTraits:
    """The hidden attributes of one synthetic product."""

    noun: Noun
    brand: str
    positioning: str
    seasonal: bool
    gift: str
    buzz: str
    # "launch" or "drop" (Bass diffusion, a drop's faster) or "staple" (a constant weekly pool)
    demand: str = "launch"

    @property
    def category(self) -> str:
        return self.noun.category


def sample_traits(rng: np.random.Generator) -> ProductTraits:
    noun = NOUNS[rng.integers(len(NOUNS))]
    return ProductTraits(
        noun=noun,
        brand=str(rng.choice(BRAND_A)) + str(rng.choice(BRAND_B)),
        positioning=str(rng.choice(list(POSITIONING))),
        seasonal=bool(rng.random() < 0.5),
        gift=str(rng.choice(list(GIFT))),
        buzz=str(rng.choice(list(BUZZ))),
        demand="staple" if rng.random() < STAPLE_SHARE else "launch",
    )


def season_name(week_of_year: int) -> str:
    if week_of_year >= 48 or week_of_year <= 8:
        return "winter"
    if week_of_year <= 21:
        return "spring"
    if week_of_year <= 35:
        return "summer"
    return "autumn"


def _pick(rng: np.random.Generator, table: dict, key, vocabulary: Vocabulary) -> str:
    train, paraphrase = table[key]
    return str(rng.choice(train if vocabulary == "train" else paraphrase))


def describe(t: ProductTraits, rng: np.random.Generator, vocabulary: Vocabulary = "train") -> str:
    """A product description whose wording carries every trait, in a random order of clauses."""
    position = _pick(rng, POSITIONING, t.positioning, vocabulary)
    season = _pick(rng, SEASONAL, t.seasonal, vocabulary).format(season=season_name(t.noun.peak_week))
    gift = _pick(rng, GIFT, t.gift, vocabulary)
    buzz = _pick(rng, BUZZ, t.buzz, vocabulary)
    # A staple always says so; a launch or a drop only half the time (most real launch texts do not), so
    # a text that says neither reads as a launch, the kind of product this simulator is about.
    says_demand = t.demand == "staple" or rng.random() < LAUNCH_SAYS_SO
    demand = [_pick(rng, DEMAND, t.demand, vocabulary)] if says_demand else []
    features = rng.choice(list(t.noun.features), size=2, replace=False)
    clauses = [("seasonal", season), ("gift", gift), ("buzz", buzz), *(("demand", d) for d in demand)]
    rng.shuffle(clauses)
    said = [text for _, text in clauses]
    return f"{t.brand} {position} {t.noun.name} with {features[0]} and {features[1]}: " + "; ".join(said) + "."


def creative(t: ProductTraits, hook: str, rng: np.random.Generator, vocabulary: Vocabulary = "train") -> str:
    """An ad creative in one of the hook styles (which sets its base click-through rate)."""
    _, train, paraphrase = HOOKS[hook]
    opener = str(rng.choice(train if vocabulary == "train" else paraphrase))
    return f"{opener} the {t.brand} {t.noun.name}."


def partner_candidates(t: ProductTraits, rng: np.random.Generator) -> list[tuple[str, float]]:
    """Two catalogue items to bundle with: one complement (high affinity) and one unrelated item."""
    complement = str(rng.choice(list(t.noun.complements)))
    others = [c for n in NOUNS if n.category != t.category for c in n.complements]
    unrelated = str(rng.choice(others))
    return [(complement, float(rng.uniform(0.65, 0.9))), (unrelated, float(rng.uniform(0.05, 0.2)))]
