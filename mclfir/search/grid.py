"""Draw a search result as one picture: the query, then the top-k items with their values and scores."""

import logging
from pathlib import Path

import numpy as np

from mclfir.search.query import SearchResult

_logger = logging.getLogger(__name__)

# Each tile is drawn at this height in px (the catalogue photos are 80 px high), keeping its aspect.
TILE_HEIGHT = 160
CAPTION_HEIGHT = 44
MARGIN = 8
QUERY_BORDER = (200, 40, 40)
MATCH_BORDER = (40, 150, 60)


def _tile(pixels: np.ndarray, caption: list[str], border: tuple[int, int, int] | None):
    """Return one tile: the image scaled to TILE_HEIGHT with a caption of up to three lines below it."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(np.ascontiguousarray(pixels))
    width = max(1, round(image.width * TILE_HEIGHT / image.height))
    image = image.resize((width, TILE_HEIGHT), Image.Resampling.BILINEAR)

    tile = Image.new("RGB", (width + 2 * MARGIN, TILE_HEIGHT + CAPTION_HEIGHT + 2 * MARGIN), "white")
    tile.paste(image, (MARGIN, MARGIN))
    draw = ImageDraw.Draw(tile)
    if border is not None:
        draw.rectangle([MARGIN - 3, MARGIN - 3, MARGIN + width + 2, MARGIN + TILE_HEIGHT + 2], outline=border, width=3)
    font = ImageFont.load_default()
    for line_index, line in enumerate(caption[:3]):
        draw.text((MARGIN, MARGIN + TILE_HEIGHT + 4 + 13 * line_index), line[:24], fill="black", font=font)
    return tile


def write_grid(result: SearchResult, hit_pixels: list[np.ndarray], out: Path) -> Path:
    """Write ``result`` as a PNG row: the query (red frame), then each hit, framed green when its value is the query's."""
    from PIL import Image

    query_caption = ["query", result.query_id or Path(result.query).name, result.query_value or result.attribute]
    tiles = [_tile(result.query_pixels, query_caption, QUERY_BORDER)]
    for hit, pixels in zip(result.hits, hit_pixels):
        border = MATCH_BORDER if result.query_value is not None and hit.value == result.query_value else None
        tiles.append(_tile(pixels, [f"#{hit.rank} {hit.image_id}", f"score {hit.score:.3f}", hit.value], border))

    width = sum(tile.width for tile in tiles)
    height = max(tile.height for tile in tiles)
    grid = Image.new("RGB", (width, height), "white")
    left = 0
    for tile in tiles:
        grid.paste(tile, (left, 0))
        left += tile.width

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    _logger.info("Wrote the result grid to %s", out)
    return out
