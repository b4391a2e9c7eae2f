"""Kinetics-skeleton: the ST-GCN release (one JSON per video + label JSON) or PYSKL's ``k400_hrnet.pkl``."""
from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

from ..readers.kinetics import read_kinetics_json, read_kinetics_labels
from .base import DatasetSource, Item
from .pickled import pyskl_items
from .registry import register_source

__all__ = ["KineticsSource", "kinetics_json_items", "KINETICS400_CLASSES"]

#: The Kinetics-400 classes in label order: the alphabetical list, index 0 'abseiling' ... 399 'zumba' (the
#: ``label_index`` of the Kinetics-skeleton release and of PYSKL's k400 pickles; checked against the release's
#: JSON files: 0 'abseiling', 166 'javelin throw', 207 'parkour', 335 'strumming guitar').
KINETICS400_CLASSES: tuple[str, ...] = (
    "abseiling", "air drumming", "answering questions", "applauding", "applying cream", "archery", "arm wrestling",
    "arranging flowers", "assembling computer", "auctioning", "baby waking up", "baking cookies", "balloon blowing",
    "bandaging", "barbequing", "bartending", "beatboxing", "bee keeping", "belly dancing", "bench pressing",
    "bending back", "bending metal", "biking through snow", "blasting sand", "blowing glass", "blowing leaves",
    "blowing nose", "blowing out candles", "bobsledding", "bookbinding", "bouncing on trampoline", "bowling",
    "braiding hair", "breading or breadcrumbing", "breakdancing", "brush painting", "brushing hair",
    "brushing teeth", "building cabinet", "building shed", "bungee jumping", "busking", "canoeing or kayaking",
    "capoeira", "carrying baby", "cartwheeling", "carving pumpkin", "catching fish", "catching or throwing baseball",
    "catching or throwing frisbee", "catching or throwing softball", "celebrating", "changing oil", "changing wheel",
    "checking tires", "cheerleading", "chopping wood", "clapping", "clay pottery making", "clean and jerk",
    "cleaning floor", "cleaning gutters", "cleaning pool", "cleaning shoes", "cleaning toilet", "cleaning windows",
    "climbing a rope", "climbing ladder", "climbing tree", "contact juggling", "cooking chicken", "cooking egg",
    "cooking on campfire", "cooking sausages", "counting money", "country line dancing", "cracking neck",
    "crawling baby", "crossing river", "crying", "curling hair", "cutting nails", "cutting pineapple",
    "cutting watermelon", "dancing ballet", "dancing charleston", "dancing gangnam style", "dancing macarena",
    "deadlifting", "decorating the christmas tree", "digging", "dining", "disc golfing", "diving cliff", "dodgeball",
    "doing aerobics", "doing laundry", "doing nails", "drawing", "dribbling basketball", "drinking", "drinking beer",
    "drinking shots", "driving car", "driving tractor", "drop kicking", "drumming fingers", "dunking basketball",
    "dying hair", "eating burger", "eating cake", "eating carrots", "eating chips", "eating doughnuts",
    "eating hotdog", "eating ice cream", "eating spaghetti", "eating watermelon", "egg hunting", "exercising arm",
    "exercising with an exercise ball", "extinguishing fire", "faceplanting", "feeding birds", "feeding fish",
    "feeding goats", "filling eyebrows", "finger snapping", "fixing hair", "flipping pancake", "flying kite",
    "folding clothes", "folding napkins", "folding paper", "front raises", "frying vegetables", "garbage collecting",
    "gargling", "getting a haircut", "getting a tattoo", "giving or receiving award", "golf chipping",
    "golf driving", "golf putting", "grinding meat", "grooming dog", "grooming horse", "gymnastics tumbling",
    "hammer throw", "headbanging", "headbutting", "high jump", "high kick", "hitting baseball", "hockey stop",
    "holding snake", "hopscotch", "hoverboarding", "hugging", "hula hooping", "hurdling", "hurling (sport)",
    "ice climbing", "ice fishing", "ice skating", "ironing", "javelin throw", "jetskiing", "jogging",
    "juggling balls", "juggling fire", "juggling soccer ball", "jumping into pool", "jumpstyle dancing",
    "kicking field goal", "kicking soccer ball", "kissing", "kitesurfing", "knitting", "krumping", "laughing",
    "laying bricks", "long jump", "lunge", "making a cake", "making a sandwich", "making bed", "making jewelry",
    "making pizza", "making snowman", "making sushi", "making tea", "marching", "massaging back", "massaging feet",
    "massaging legs", "massaging person's head", "milking cow", "mopping floor", "motorcycling", "moving furniture",
    "mowing lawn", "news anchoring", "opening bottle", "opening present", "paragliding", "parasailing", "parkour",
    "passing American football (in game)", "passing American football (not in game)", "peeling apples",
    "peeling potatoes", "petting animal (not cat)", "petting cat", "picking fruit", "planting trees", "plastering",
    "playing accordion", "playing badminton", "playing bagpipes", "playing basketball", "playing bass guitar",
    "playing cards", "playing cello", "playing chess", "playing clarinet", "playing controller", "playing cricket",
    "playing cymbals", "playing didgeridoo", "playing drums", "playing flute", "playing guitar", "playing harmonica",
    "playing harp", "playing ice hockey", "playing keyboard", "playing kickball", "playing monopoly",
    "playing organ", "playing paintball", "playing piano", "playing poker", "playing recorder", "playing saxophone",
    "playing squash or racquetball", "playing tennis", "playing trombone", "playing trumpet", "playing ukulele",
    "playing violin", "playing volleyball", "playing xylophone", "pole vault", "presenting weather forecast",
    "pull ups", "pumping fist", "pumping gas", "punching bag", "punching person (boxing)", "push up", "pushing car",
    "pushing cart", "pushing wheelchair", "reading book", "reading newspaper", "recording music", "riding a bike",
    "riding camel", "riding elephant", "riding mechanical bull", "riding mountain bike", "riding mule",
    "riding or walking with horse", "riding scooter", "riding unicycle", "ripping paper", "robot dancing",
    "rock climbing", "rock scissors paper", "roller skating", "running on treadmill", "sailing", "salsa dancing",
    "sanding floor", "scrambling eggs", "scuba diving", "setting table", "shaking hands", "shaking head",
    "sharpening knives", "sharpening pencil", "shaving head", "shaving legs", "shearing sheep", "shining shoes",
    "shooting basketball", "shooting goal (soccer)", "shot put", "shoveling snow", "shredding paper",
    "shuffling cards", "side kick", "sign language interpreting", "singing", "situp", "skateboarding", "ski jumping",
    "skiing (not slalom or crosscountry)", "skiing crosscountry", "skiing slalom", "skipping rope", "skydiving",
    "slacklining", "slapping", "sled dog racing", "smoking", "smoking hookah", "snatch weight lifting", "sneezing",
    "sniffing", "snorkeling", "snowboarding", "snowkiting", "snowmobiling", "somersaulting", "spinning poi",
    "spray painting", "spraying", "springboard diving", "squat", "sticking tongue out", "stomping grapes",
    "stretching arm", "stretching leg", "strumming guitar", "surfing crowd", "surfing water", "sweeping floor",
    "swimming backstroke", "swimming breast stroke", "swimming butterfly stroke", "swing dancing", "swinging legs",
    "swinging on something", "sword fighting", "tai chi", "taking a shower", "tango dancing", "tap dancing",
    "tapping guitar", "tapping pen", "tasting beer", "tasting food", "testifying", "texting", "throwing axe",
    "throwing ball", "throwing discus", "tickling", "tobogganing", "tossing coin", "tossing salad", "training dog",
    "trapezing", "trimming or shaving beard", "trimming trees", "triple jump", "tying bow tie",
    "tying knot (not on a tie)", "tying tie", "unboxing", "unloading truck", "using computer",
    "using remote controller (not gaming)", "using segway", "vault", "waiting in line", "walking the dog",
    "washing dishes", "washing feet", "washing hair", "washing hands", "water skiing", "water sliding",
    "watering plants", "waxing back", "waxing chest", "waxing eyebrows", "waxing legs", "weaving basket", "welding",
    "whistling", "windsurfing", "wrapping present", "wrestling", "writing", "yawning", "yoga", "zumba",
)


def kinetics_json_items(root: Path, split: str, num_person_in: int = 5, num_person_out: int = 2,
                        layout: str = "openpose") -> Iterator[Item]:
    """The entries of the ST-GCN release layout under ``root``: ``kinetics_<split>_label.json`` lists the
    videos of ``kinetics_<split>/``; entries with ``has_skeleton: false`` and listed videos whose JSON file is
    absent are skipped with their reason (the feeder's ``num_person_in`` / ``num_person_out``)."""
    label_file = root / f"kinetics_{split}_label.json"
    folder = root / f"kinetics_{split}"
    labels = read_kinetics_labels(label_file)
    for vid, reason in labels.skipped.items():
        yield Item(vid, str(folder / f"{vid}.json"), skip=reason)
    for vid, label in labels.labels.items():
        path = folder / f"{vid}.json"
        if not path.is_file():
            yield Item(vid, str(path), skip="listed in the label file but the JSON file is missing")
            continue
        yield Item(vid, str(path), partial(read_kinetics_json, path, num_person_in=num_person_in,
                                           num_person_out=num_person_out, layout=layout, label=label))


@register_source
class KineticsSource(DatasetSource):
    """Kinetics-400 skeletons, 2-D: OpenPose-18 JSON of the ST-GCN release (coordinates already centred,
    score in channel 2) or COCO-17 HRNet poses of PYSKL's K400 pickle with its kpfiles.

    Options: ``ann_file``, ``kpfile_root``, ``box_thr`` (pickle form); ``num_person_in`` (default 5),
    ``num_person_out`` (default 2; also the person cap of the pickle form).
    """

    names = ("kinetics",)
    num_classes = 400
    #: The class names in label order.
    class_names = KINETICS400_CLASSES
    layout = "openpose"
    dims = 2
    pipeline_kind = "2d-normalized"
    clip_len = 150
    num_person = 2
    option_names = ("ann_file", "kpfile_root", "box_thr", "num_person_in", "num_person_out")
    expected = ("the ST-GCN release layout `kinetics_train/`, `kinetics_val/` (one JSON per video) with "
                "`kinetics_train_label.json` and `kinetics_val_label.json`; or a PYSKL `k400_hrnet.pkl` (option "
                "ann_file=) with the kpfiles its `raw_file` entries name (option kpfile_root=)")
    origin = ("Kinetics-skeleton (ST-GCN release, OpenPose on Kinetics-400): see "
              "https://github.com/yysijie/st-gcn (README 'Kinetics-skeleton', 7.5 GB); or PYSKL's "
              "k400_hrnet.pkl with its kpfiles: https://github.com/kennymckormick/pyskl/blob/main/tools/data/"
              "README.md")
    #: The PYSKL pickle looked for under ``root`` and the layout of its poses.
    pickle_names = ("k400_hrnet.pkl",)
    pickle_layout = "coco"

    def locate(self) -> None:
        self.pickle = self.locate_pickle(self.pickle_names)
        if self.pickle is None:
            need = [self.root / n for n in ("kinetics_train", "kinetics_val")]
            labels = [self.root / f"kinetics_{s}_label.json" for s in ("train", "val")]
            missing = [str(p.name) for p in need + labels if not p.exists()]
            if missing:
                raise self.not_found("missing " + ", ".join(missing))

    def items(self, split: str) -> Iterator[Item]:
        o = self.options
        if self.pickle is not None:
            yield from pyskl_items(self.pickle, split, self.pickle_layout, o.get("kpfile_root"),
                                   o.get("box_thr"), int(o.get("num_person_out", 2)))
        else:
            yield from kinetics_json_items(self.root, split, int(o.get("num_person_in", 5)),
                                           int(o.get("num_person_out", 2)))
