"""The bad-input corpus: every malformed file a user might hand Atelier, built in code, tiny on disk.

Each `Case` names the real entry point that must refuse it (an `atelier` command line), the files
it needs (written by a builder into an `in/` folder), and a fragment the single `error:` line must
contain, so a case cannot pass by failing for some other reason. `{in}` and `{out}` in the
arguments become the input folder and the only folder the command may write to.

    python tests/bad_inputs/corpus.py /tmp/corpus    # write every case's files to look at them
"""
from __future__ import annotations

import io
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

Builder = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    """One bad input: where it goes in, what it looks like, and what the error must say."""

    name: str
    group: str  # catalog | interactions | image | campaign | prompt | model | ab
    argv: tuple[str, ...]
    build: Builder
    expect: str  # a fragment of the one error line (case-insensitive)
    ui_expect: str | None = None  # where the UI's message differs on purpose (e.g. it refuses more)


# --- file builders --------------------------------------------------------------------------------
def _bytes(rel: str, data: bytes) -> Builder:
    def build(root: Path) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return build


def _text(rel: str, text: str) -> Builder:
    return _bytes(rel, text.encode("utf-8"))


def _all(*builders: Builder) -> Builder:
    def build(root: Path) -> None:
        for b in builders:
            b(root)
    return build


def _lazy(rel: str, make: Callable[[], bytes]) -> Builder:
    """A file whose bytes are computed when the case is built (images need PIL)."""
    def build(root: Path) -> None:
        _bytes(rel, make())(root)
    return build


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _product(alpha: bool = True):
    """A 64x64 product picture: a red square, on a transparent background when `alpha`."""
    from PIL import Image, ImageDraw

    im = Image.new("RGBA" if alpha else "RGB", (64, 64), (0, 0, 0, 0) if alpha else (255, 255, 255))
    ImageDraw.Draw(im).rectangle((16, 16, 48, 48), fill=(200, 30, 40, 255) if alpha else (200, 30, 40))
    return im


def truncated_png() -> bytes:
    """A real PNG cut in half: the header is fine, the pixel data ends early."""
    import numpy as np
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 4), dtype=np.uint8)  # incompressible
    data = _png(Image.fromarray(noise, "RGBA"))
    return data[: len(data) // 2]


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bomb_png(width: int, height: int) -> bytes:
    """A valid-looking PNG whose header declares width x height RGBA pixels; ~60 bytes on disk."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b"")


def cmyk_jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("CMYK", (64, 64), (0, 200, 200, 0)).save(buf, format="JPEG")
    return buf.getvalue()


def gray16_png() -> bytes:
    import numpy as np
    from PIL import Image

    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    return _png(Image.fromarray(ramp))  # mode I;16, no alpha


def gray_png() -> bytes:
    return _png(_product(alpha=False).convert("L"))


def animated_gif() -> bytes:
    from PIL import Image

    frames = []
    for k in range(3):  # a square that moves: frames that really differ, so none is merged away
        im = Image.new("RGB", (64, 64), (255, 255, 255))
        im.paste((200, 30, 40), (8 + 16 * k, 16, 24 + 16 * k, 48))
        frames.append(im)
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def product_png() -> bytes:
    return _png(_product())


def small_mask_png() -> bytes:
    from PIL import Image

    return _png(Image.new("L", (32, 32), 255))


# --- tabular builders -------------------------------------------------------------------------
INTER = "user_id,item_id,timestamp\n"
CAT = "item_id,title,category\n"


def _wide_line(prefix: str, n: int = 10**6) -> str:
    return prefix + ",x" * n + "\n"


def _campaign(body: str, name: str = "c.yaml") -> Builder:
    """A campaign YAML; the bodies below are full documents unless they use the BASE template."""
    return _text(name, body)


BASE = """name: spring
products: [p0010]
audience: {{top_users: 1}}
formats: {{banner: {{sizes: [300x250]{banner}}}}}
candidates: 1
{extra}"""


def campaign(extra: str = "", banner: str = "") -> str:
    return BASE.format(extra=extra, banner=banner)


def _billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for k in range(1, 9):
        prev, cur = chr(ord("a") + k - 1), chr(ord("a") + k)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _pickle_folder(rel: str) -> Builder:
    """A diffusers-looking pipeline folder whose weights exist only as pickles."""
    index = '{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"], ' \
            '"vae": ["diffusers", "AutoencoderKL"]}'
    return _all(
        _text(f"{rel}/model_index.json", index),
        _text(f"{rel}/unet/config.json", '{"_class_name": "UNet2DConditionModel"}'),
        _bytes(f"{rel}/unet/diffusion_pytorch_model.bin", b"\x80\x04\x95 not really a pickle"),
        _text(f"{rel}/vae/config.json", '{"_class_name": "AutoencoderKL"}'),
        _bytes(f"{rel}/vae/diffusion_pytorch_model.bin", b"\x80\x04\x95 not really a pickle"),
    )


CONDITION = '{"user_id": "u1", "item_scores": [], "embedding": null, "attributes": {"color": {"navy": 1.0}}, ' \
            '"reference_items": [], "source": "test"}'
COND = _text("cond.json", CONDITION)
GEN = ("--condition", "{in}/cond.json", "--out", "{out}", "--no-score")


def _gen(kind: str, *extra: str) -> tuple[str, ...]:
    return ("generate", kind, *GEN, *extra)


# --- the cases ----------------------------------------------------------------------------------
def _data(name: str, group: str, file: str, data: bytes, expect: str, ui_expect: str | None = None) -> Case:
    return Case(name, group, ("data", "info", "{in}/" + file), _bytes(file, data), expect, ui_expect)


CASES: list[Case] = [
    # catalogs and interaction logs, through `atelier data info`
    _data("interactions-latin1", "interactions", "log.csv", (INTER + "u1,caf\xe9,5\n").encode("latin-1"), "UTF-8"),
    _data("interactions-utf16", "interactions", "log.csv", (INTER + "u1,p0010,5\n").encode("utf-16"), "log.csv"),
    _data("interactions-semicolons", "interactions", "log.csv", b"user_id;item_id;timestamp\nu1;p0010;5\n", "';'"),
    _data("interactions-tabs", "interactions", "log.csv", b"user_id\titem_id\ttimestamp\nu1\tp0010\t5\n", "log.csv:1"),
    _data("interactions-nan-user", "interactions", "log.csv", (INTER + "NaN,p0010,5\n").encode(), "not an id"),
    _data("interactions-negative-item", "interactions", "log.csv", (INTER + "u1,-7,5\n").encode(), "negative"),
    _data("interactions-nan-timestamp", "interactions", "log.csv", (INTER + "u1,p0010,nan\n").encode(), "finite"),
    _data("interactions-duplicate-rows", "interactions", "log.csv", (INTER + "u1,p0010,5\nu1,p0004,6\nu1,p0010,5\n").encode(), "duplicate"),
    _data("interactions-million-columns", "interactions", "log.csv", (INTER + "u1,p0010,5\n" + _wide_line("u1,p0004,6")).encode(), "log.csv:3",
          ui_expect="larger than"),
    _data("interactions-nul-bytes", "interactions", "log.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00", "NUL"),
    _data("interactions-empty", "interactions", "log.csv", b"", "empty"),
    _data("catalog-duplicate-ids", "catalog", "cat.csv", (CAT + "a,A shirt,top\nb,B hat,hat\na,A again,top\n").encode(), "duplicate"),
    _data("catalog-million-columns", "catalog", "cat.csv", (CAT + "a,A,top\n" + _wide_line("b,B,top")).encode(), "cat.csv:3"),
    _data("catalog-bad-json", "catalog", "cat.jsonl", b'{"item_id": "a", "title": "A", "category": "top"}\n{"item_id": "b", "title": \n', "cat.jsonl:2"),
    _data("catalog-latin1", "catalog", "cat.jsonl", '{"item_id": "a", "title": "caf\xe9", "category": "top"}\n'.encode("latin-1"), "UTF-8"),
    _data("catalog-image-escapes", "catalog", "cat.csv", b"item_id,title,category,image_path\na,A,top,../../../etc/passwd\n", "relative"),
    Case("data-missing-file", "interactions", ("data", "info", "{in}/nope.csv"), _all(), "not found"),
    # campaign YAML, through `atelier batch`
    Case("campaign-syntax-error", "campaign", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _campaign("name: spring\nproducts: [p0010\naudience: {top_users: 1}\n"), "syntax"),
    Case("campaign-tab-indent", "campaign", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _campaign("name: spring\naudience:\n\ttop_users: 1\n"), ".yaml:3"),
    Case("campaign-unknown-key", "campaign", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _campaign(campaign("colour: navy\n")), "unknown key"),
    Case("campaign-wrong-type", "campaign", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _campaign(campaign().replace("candidates: 1", "candidates: two")), "candidates"),
    Case("campaign-negative-count", "campaign", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _campaign(campaign().replace("candidates: 1", "candidates: -3")), "candidates"),
    Case("campaign-negative-top-users", "campaign", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _campaign(campaign().replace("top_users: 1", "top_users: -1")), "top_users"),
    Case("campaign-negative-seed", "campaign", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _campaign(campaign("seeds: [0, -5]\n")), "seeds"),
    Case("campaign-bad-size", "campaign", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _campaign(campaign().replace("300x250", "300by250")), "size"),
    Case("campaign-output-dotdot", "campaign", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _campaign(campaign("output: ../escaped\n")), ".."),
    Case("campaign-output-dotdot-nested", "campaign", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _campaign(campaign("output: a/../../escaped\n")), ".."),
    Case("campaign-output-absolute", "campaign", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _campaign(campaign("output: /tmp/atelier-bad-input-escape\n")), "outside"),
    Case("campaign-empty", "campaign", ("batch", "{in}/c.yaml", "--output-root", "{out}"), _campaign(""), "empty"),
    Case("campaign-not-a-mapping", "campaign", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _campaign("- name: spring\n- products: [p0010]\n"), "mapping"),
    Case("campaign-billion-laughs", "campaign", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _campaign(_billion_laughs()), "alias"),
    Case("campaign-duplicate-key", "campaign", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _campaign(campaign("candidates: 2\n")), "duplicate key"),
    Case("campaign-not-utf8", "campaign", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _bytes("c.yaml", campaign().replace("spring", "printemps-\xe9t\xe9").encode("latin-1")), "UTF-8"),
    Case("campaign-missing", "campaign", ("batch", "{in}/none.yaml", "--output-root", "{out}"), _all(), "not found"),
    Case("campaign-lora-pickle", "campaign", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _all(_campaign(campaign("model: {lora: lora.bin}\n")), _bytes("lora.bin", b"\x80\x04 pickle")), "pickle", ui_expect="LoRA"),
    Case("campaign-product-bomb", "campaign", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _all(_campaign(campaign().replace("[p0010]", "[{image: bomb.png, category: bag}]")),
              _bytes("bomb.png", bomb_png(100_000, 100_000))), "bomb.png", ui_expect="catalog products"),
    Case("campaign-product-truncated", "campaign", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _all(_campaign(campaign().replace("[p0010]", "[{image: cut.png, category: bag}]")),
              _lazy("cut.png", truncated_png)), "cut.png", ui_expect="catalog products"),
    Case("campaign-shop-negative-ids", "campaign", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _all(_campaign(campaign("shop: shop\n")), _text("shop/catalog.csv", CAT + "p0010,A shirt,shirt\n"),
              _text("shop/interactions.csv", INTER + "-1,p0010,5\n")), "negative", ui_expect="demo shop"),
    # prompts and other free text
    Case("prompt-headline-control-chars", "prompt", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _campaign(campaign(banner=', headline: "New\\x1b[31m in"')), "control"),
    Case("prompt-headline-10k", "prompt", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _campaign(campaign(banner=", headline: " + "a" * 10_000)), "headline"),
    Case("prompt-headline-empty", "prompt", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _campaign(campaign(banner=', headline: ""')), "headline"),
    Case("prompt-negative-10k", "prompt", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _campaign(campaign("model: {negative_prompt: " + "b " * 5_000 + "}\n")), "negative_prompt"),
    Case("prompt-cli-headline-control", "prompt", _gen("banner", "--image", "{in}/p.png", "--headline", "Sale\x07now"),
         _all(COND, _lazy("p.png", product_png)), "control"),
    Case("prompt-cli-headline-empty", "prompt", _gen("banner", "--image", "{in}/p.png", "--headline", "  "),
         _all(COND, _lazy("p.png", product_png)), "empty"),
    Case("prompt-cli-cta-10k", "prompt", _gen("banner", "--image", "{in}/p.png", "--cta", "x" * 10_000),
         _all(COND, _lazy("p.png", product_png)), "limit"),
    Case("prompt-ab-control", "prompt", ("ab", "add", "exp", "c1", "--prompt", "red\x1bdress", "--db", "{out}/ab.sqlite"),
         _all(), "control"),
    # images, through `atelier generate background|banner --image`
    Case("image-truncated", "image", _gen("background", "--image", "{in}/cut.png"), _all(COND, _lazy("cut.png", truncated_png)), "truncated"),
    Case("image-bomb-huge", "image", _gen("banner", "--image", "{in}/bomb.png"),
         _all(COND, _bytes("bomb.png", bomb_png(100_000, 100_000))), "bomb.png"),
    Case("image-bomb-over-limit", "image", _gen("background", "--image", "{in}/bomb.png"),
         _all(COND, _bytes("bomb.png", bomb_png(9_000, 9_000))), "9000x9000"),
    Case("image-zero-bytes", "image", _gen("background", "--image", "{in}/empty.png"), _all(COND, _bytes("empty.png", b"")), "empty"),
    Case("image-not-an-image", "image", _gen("banner", "--image", "{in}/notes.png"),
         _all(COND, _text("notes.png", "these are my notes, not a picture\n")), "not an image"),
    Case("image-animated-gif", "image", _gen("background", "--image", "{in}/anim.gif"), _all(COND, _lazy("anim.gif", animated_gif)), "animated"),
    Case("image-cmyk-no-alpha", "image", _gen("background", "--image", "{in}/cmyk.jpg"), _all(COND, _lazy("cmyk.jpg", cmyk_jpeg)), "transparent"),
    Case("image-16bit-no-alpha", "image", _gen("background", "--image", "{in}/deep.png"), _all(COND, _lazy("deep.png", gray16_png)), "transparent"),
    Case("image-gray-no-alpha", "image", _gen("background", "--image", "{in}/gray.png"), _all(COND, _lazy("gray.png", gray_png)), "transparent"),
    Case("image-mask-size-mismatch", "image", _gen("background", "--image", "{in}/p.png", "--mask", "{in}/m.png"),
         _all(COND, _lazy("p.png", product_png), _lazy("m.png", small_mask_png)), "mask"),
    Case("image-missing", "image", _gen("banner", "--image", "{in}/nowhere.png"), COND, "not found"),
    # LoRA training data, through `atelier finetune lora`: checked before any model loads
    Case("lora-caption-bomb", "image", ("finetune", "lora", "{in}/data", "--base-model", "{in}/no-model", "--out", "{out}/lora"),
         _all(_bytes("data/b.png", bomb_png(100_000, 100_000)), _text("data/b.txt", "a bag")), "b.png"),
    Case("lora-caption-not-an-image", "image", ("finetune", "lora", "{in}/data", "--base-model", "{in}/no-model", "--out", "{out}/lora"),
         _all(_text("data/x.png", "not a picture"), _text("data/x.txt", "a shirt")), "x.png"),
    Case("lora-caption-zero-bytes", "image", ("finetune", "lora", "{in}/data", "--base-model", "{in}/no-model", "--out", "{out}/lora"),
         _all(_bytes("data/z.png", b""), _text("data/z.txt", "a hat")), "empty"),
    # model paths, through `atelier demo-model eval --model` and `generate --lora`
    Case("model-missing-folder", "model", ("demo-model", "eval", "--model", "{in}/no-such-model", "--n", "1"), _all(), "not found"),
    Case("model-controlnet-as-pipeline", "model", ("demo-model", "eval", "--model", "{in}/cn", "--n", "1"),
         _text("cn/config.json", '{"_class_name": "ControlNetModel"}'), "ControlNetModel"),
    Case("model-wrong-pipeline-class", "model", ("demo-model", "eval", "--model", "{in}/m", "--n", "1"),
         _text("m/model_index.json", '{"_class_name": "AudioLDMPipeline"}'), "AudioLDMPipeline"),
    Case("model-pickle-weights", "model", ("demo-model", "eval", "--model", "{in}/pk", "--n", "1"), _pickle_folder("pk"), "pickle"),
    Case("model-single-ckpt", "model", ("demo-model", "eval", "--model", "{in}/sd.ckpt", "--n", "1"),
         _bytes("sd.ckpt", b"\x80\x04 pickle"), "sd.ckpt"),
    Case("model-index-bad-json", "model", ("demo-model", "eval", "--model", "{in}/m", "--n", "1"),
         _text("m/model_index.json", '{"_class_name": '), "model_index.json"),
    Case("model-lora-base-pickle", "model", ("finetune", "lora", "{in}/data", "--base-model", "{in}/pk", "--out", "{out}/lora"),
         _all(_pickle_folder("pk"), _lazy("data/p.png", product_png), _text("data/p.txt", "a red square")), "pickle"),
    Case("model-lora-pickle", "model", _gen("product", "--category", "shirt", "--lora", "{in}/lora.bin"),
         _all(COND, _bytes("lora.bin", b"\x80\x04 pickle")), "pickle"),
    # the A/B store
    Case("ab-db-not-sqlite", "ab", ("ab", "list", "--db", "{in}/ab.sqlite"), _text("ab.sqlite", "hello, not a database\n"), "A/B database"),
    Case("ab-db-is-folder", "ab", ("ab", "list", "--db", "{in}/dir"), _text("dir/keep.txt", "x"), "folder"),
    Case("ab-manifest-bad-json", "ab", ("ab", "add", "exp", "--manifest", "{in}/manifest.jsonl", "--db", "{out}/ab.sqlite"),
         _text("manifest.jsonl", '{"creative_id": "a"}\n{broken\n{"creative_id": "b"}\n'), "manifest.jsonl:2"),
]



# --- issue 19: a hostile corpus found these; each case failed (traceback, late error or silent
# acceptance) before the fix it names ----------------------------------------------------------------
def _safetensors(n_floats: int = 1) -> bytes:
    """A valid (tiny) safetensors file: one float32 tensor."""
    import json

    header = json.dumps({"w": {"dtype": "F32", "shape": [n_floats], "data_offsets": [0, 4 * n_floats]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + b"\x00" * (4 * n_floats)


PICKLE = b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94."
DEMO_SD = Path(__file__).resolve().parents[2] / "assets" / "models" / "demo-sd"


def _demo_copy(rel: str, edits: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> Builder:
    """The shipped demo pipeline as symlinks (nothing copied), with some files replaced or left out."""
    def build(root: Path) -> None:
        for f in DEMO_SD.rglob("*"):
            if f.is_file():
                name = str(f.relative_to(DEMO_SD))
                if name in drop or name in (edits or {}):
                    continue
                dest = root / rel / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.symlink_to(f)
        for name, text in (edits or {}).items():
            _text(f"{rel}/{name}", text)(root)
    return build


def _huge_unet_config() -> str:
    import json

    cfg = json.loads((DEMO_SD / "unet" / "config.json").read_text())
    cfg["block_out_channels"] = [64_000, 96_000, 128_000]
    return json.dumps(cfg)


def _symlink(rel: str, target: str) -> Builder:
    def build(root: Path) -> None:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(target)
    return build


def _foreign_sqlite(rel: str) -> Builder:
    def build(root: Path) -> None:
        import sqlite3

        con = sqlite3.connect(root / rel)
        con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT)")
        con.execute("INSERT INTO customers (email) VALUES ('ann@example.com')")
        con.commit()
        con.close()
    return build


def _cond(**fields) -> Builder:
    import json

    base = json.loads(CONDITION)
    base.update(fields)
    return _text("cond.json", json.dumps(base))


FAST = ("--steps", "1", "--candidates", "1")  # old code generated before failing: keep that short
JSONL_CAT = '{"item_id": "a", "title": "A shirt", "category": "top"}\n'


def _gen_cond(kind: str, *extra: str) -> tuple[str, ...]:
    return ("generate", kind, *GEN, *FAST, *extra)


N_BEFORE_ISSUE_19 = len(CASES)
CASES += [
    # YAML: refused before anything is constructed
    Case("campaign-python-tag", "campaign", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _campaign(campaign().replace("name: spring", 'name: !!python/object/apply:os.system ["echo pwned"]')), "tag"),
    Case("campaign-custom-tag", "campaign", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _campaign(campaign().replace("name: spring", "name: !vault spring")), "tag"),
    Case("campaign-complex-key", "campaign", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _campaign(campaign("? [a, b]\n: 1\n")), "complex mapping keys"),
    Case("campaign-deep-nesting", "campaign", ("batch", "{in}/c.yaml", "--output-root", "{out}"),
         _campaign(campaign("extra: " + "[" * 5000 + "]" * 5000 + "\n")), "nested"),
    Case("campaign-seed-list-10k", "campaign", ("batch", "{in}/c.yaml", "--output-root", "{out}", "--dry-run"),
         _campaign(campaign("seeds: [" + ", ".join(map(str, range(10_000))) + "]\n").replace("candidates: 1\n", "")),
         "at most 256"),
    # JSON catalogs (through `atelier data info`)
    _data("catalog-jsonl-deep-nesting", "catalog", "cat.jsonl",
          ('{"item_id": "a", "title": "A", "category": "top", "attributes": ' + "[" * 100_000 + "]" * 100_000
           + "}\n").encode(), "nested"),
    _data("catalog-jsonl-huge-number", "catalog", "cat.jsonl",
          ('{"item_id": 1' + "0" * 5000 + ', "title": "A", "category": "top"}\n').encode(), "digits"),
    _data("catalog-jsonl-duplicate-keys", "catalog", "cat.jsonl",
          b'{"item_id": "a", "title": "A", "category": "top", "category": "hat"}\n', "duplicate key"),
    _data("catalog-jsonl-nan", "catalog", "cat.jsonl",
          b'{"item_id": "a", "title": "A", "category": "top", "attributes": {"size": NaN}}\n', "NaN"),
    _data("catalog-jsonl-title-over-1mb", "catalog", "cat.jsonl",
          ('{"item_id": "a", "title": "' + "t" * (1 << 20 | 1) + '", "category": "top"}\n').encode(), "limit"),
    Case("catalog-image-symlink-outside", "catalog", ("data", "info", "{in}/shop/catalog.csv"),
         _all(_text("shop/catalog.csv", "item_id,title,category,image_path\na,A,top,link.png\n"),
              _lazy("secret.png", product_png), _symlink("shop/link.png", "../secret.png")), "outside"),
    Case("catalog-image-bomb", "catalog", ("data", "info", "{in}/shop/catalog.csv"),
         _all(_text("shop/catalog.csv", "item_id,title,category,image_path\na,A,top,bomb.png\n"),
              _bytes("shop/bomb.png", bomb_png(100_000, 100_000))), "pixels"),
    # --condition files
    Case("condition-deep-nesting", "prompt", _gen_cond("product", "--category", "shirt"),
         _text("cond.json", '{"user_id": "u1", "embedding": ' + "[" * 100_000 + "]" * 100_000 + "}"), "nested"),
    Case("condition-huge-number", "prompt", _gen_cond("product", "--category", "shirt"),
         _text("cond.json", '{"user_id": "u1", "embedding": [1' + "0" * 5000 + "]}"), "digits"),
    Case("condition-nan-weight", "prompt", _gen_cond("product", "--category", "shirt"),
         _text("cond.json", '{"user_id": "u1", "attributes": {"color": {"navy": NaN}}}'), "NaN"),
    Case("condition-infinite-weight", "prompt", _gen_cond("product", "--category", "shirt"),
         _text("cond.json", '{"user_id": "u1", "attributes": {"color": {"navy": 1e999}}}'), "out of range"),
    Case("condition-attributes-wrong-type", "prompt", _gen_cond("product", "--category", "shirt"),
         _cond(attributes={"color": 5}), "attributes.color"),
    Case("condition-item-scores-string", "prompt", _gen_cond("product", "--category", "shirt"),
         _cond(item_scores="p0010"), "item_scores"),
    Case("condition-embedding-strings", "prompt", _gen_cond("product", "--category", "shirt"),
         _cond(embedding=["a", "b"]), "embedding[0]"),
    Case("condition-not-an-object", "prompt", _gen_cond("product", "--category", "shirt"),
         _text("cond.json", "[1, 2, 3]"), "JSON object"),
    Case("condition-latin1", "prompt", _gen_cond("product", "--category", "shirt"),
         _bytes("cond.json", '{"user_id": "caf\xe9"}'.encode("latin-1")), "UTF-8"),
    # weights: what the loader would read, not the path's suffix
    Case("lora-folder-only-pickle", "model", _gen_cond("product", "--category", "shirt", "--lora", "{in}/lora"),
         _all(COND, _bytes("lora/pytorch_lora_weights.bin", PICKLE)), "pickle"),
    Case("lora-renamed-pickle", "model", _gen_cond("product", "--category", "shirt", "--lora", "{in}/style.safetensors"),
         _all(COND, _bytes("style.safetensors", PICKLE)), "not a safetensors file"),
    Case("ip-adapter-encoder-pickle", "model",
         _gen_cond("product", "--category", "shirt", "--ip-adapter", "{in}/ip/ip-adapter.safetensors"),
         _all(COND, _bytes("ip/ip-adapter.safetensors", _safetensors()),
              _text("ip/image_encoder/config.json", '{"model_type": "clip_vision_model"}'),
              _bytes("ip/image_encoder/pytorch_model.bin", PICKLE)), "pickle"),
    Case("model-text-encoder-pickle", "model", ("demo-model", "eval", "--model", "{in}/m", "--n", "1"),
         _all(_demo_copy("m", drop=("text_encoder/model.safetensors",)),
              _bytes("m/text_encoder/pytorch_model.bin", PICKLE)), "pickle"),
    Case("model-safetensors-decoy", "model", ("demo-model", "eval", "--model", "{in}/m", "--n", "1"),
         _all(_demo_copy("m", drop=("unet/diffusion_pytorch_model.safetensors",)),
              _bytes("m/unet/diffusion_pytorch_model.bin", PICKLE),
              _bytes("m/unet/old/decoy.safetensors", _safetensors())), "pickle"),
    Case("model-index-is-a-list", "model", ("demo-model", "eval", "--model", "{in}/m", "--n", "1"),
         _text("m/model_index.json", "[]"), "JSON object"),
    Case("model-unet-config-wrong-type", "model", ("demo-model", "eval", "--model", "{in}/m", "--n", "1"),
         _demo_copy("m", edits={"unet/config.json": "[1, 2]"}), "JSON object"),
    Case("model-config-absurd-sizes", "model", ("demo-model", "eval", "--model", "{in}/m", "--n", "1"),
         _demo_copy("m", edits={"unet/config.json": _huge_unet_config()}), "GiB"),
    Case("controlnet-config-is-a-list", "model",
         _gen_cond("background", "--image", "{in}/p.png", "--controlnet", "{in}/cn"),
         _all(COND, _lazy("p.png", product_png), _text("cn/config.json", "[]"),
              _bytes("cn/diffusion_pytorch_model.safetensors", _safetensors())), "JSON object"),
    Case("adapter-config-is-a-list", "model", _gen_cond("product", "--category", "shirt", "--adapter", "{in}/ad"),
         _all(COND, _text("ad/config.json", "[1]"), _bytes("ad/adapter.safetensors", _safetensors())),
         "JSON object"),
    Case("reward-config-not-json", "model", _gen_cond("product", "--category", "shirt", "--reward", "{in}/rw"),
         _all(COND, _text("rw/config.json", "{broken"), _bytes("rw/model.safetensors", _safetensors())),
         "invalid JSON"),
    # flags, refused before anything is generated
    Case("flag-seed-overflow", "flags", _gen_cond("product", "--category", "shirt", "--seed", "9" * 30),
         COND, "--seed"),
    Case("flag-unknown-device", "flags", _gen_cond("product", "--category", "shirt", "--device", "tpu9"),
         COND, "--device"),
    Case("flag-out-is-a-file", "flags",
         ("generate", "product", "--condition", "{in}/cond.json", "--no-score", *FAST, "--category", "shirt",
          "--out", "{in}/taken.png"),
         _all(COND, _lazy("taken.png", product_png)), "--out"),
    Case("flag-json-out-is-a-folder", "flags", _gen_cond("product", "--category", "shirt", "--json-out", "{in}/dir"),
         _all(COND, _text("dir/keep.txt", "x")), "--json-out"),
    Case("flag-serve-once-negative-seed", "flags", ("ab", "serve-once", "exp", "--seed", "-3", "--db", "{out}/ab.sqlite"),
         _all(), "--seed"),
    Case("flag-serve-max-file-size", "flags",
         ("serve", "--max-file-size", "lots", "--out", "{out}/ui", "--ab-db", "{out}/ab.sqlite", "--port", "7999"),
         _all(), "--max-file-size"),
    # the A/B store
    Case("ab-db-another-apps-sqlite", "ab", ("ab", "list", "--db", "{in}/crm.sqlite"), _foreign_sqlite("crm.sqlite"),
         "other tables"),
    Case("ab-manifest-missing-fields", "ab", ("ab", "add", "exp", "--manifest", "{in}/manifest.jsonl", "--db",
                                              "{out}/ab.sqlite"),
         _text("manifest.jsonl", '{"creative_id": "a"}\n'), "manifest.jsonl:1"),
    Case("ab-manifest-deep-nesting", "ab", ("ab", "add", "exp", "--manifest", "{in}/manifest.jsonl", "--db",
                                            "{out}/ab.sqlite"),
         _text("manifest.jsonl", '{"creative_id": ' + "[" * 100_000 + "]" * 100_000 + "}\n"), "nested"),
]
ISSUE_19 = CASES[N_BEFORE_ISSUE_19:]

def build_case(case: Case, folder: Path) -> Path:
    """Write one case's files into `folder` and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    case.build(folder)
    return folder


def argv_for(case: Case, inputs: Path, out: Path) -> list[str]:
    """The case's command line with its folders filled in."""
    return [a.replace("{in}", str(inputs)).replace("{out}", str(out)) for a in case.argv]


def write_corpus(root: Path) -> list[Path]:
    """Every case's files, one folder per case (for looking at them or feeding other tools)."""
    return [build_case(c, Path(root) / c.name) for c in CASES]


if __name__ == "__main__":
    folders = write_corpus(Path(sys.argv[1] if len(sys.argv) > 1 else "bad-input-corpus"))
    print(f"wrote {len(folders)} cases under {folders[0].parent}")
