"""ClickMe shards without TensorFlow: TFRecord framing and CRCs, tf.train.Example parsing, and the release's
preparation against the released loader's outputs (harmonization 0.0.9, experiments/make_clickme_fixtures.py)."""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fixtures.clickme import PARSED, SHARD, clickme_record, write_clickme_shard
from neuroreg.data import ClickMeDataset, find_clickme_shards, iter_clickme, parse_clickme_record
from neuroreg.data._tfrecord import (_raw_loop, crc32c, encode_example, index_records, iter_records,
                                     masked_crc32c, parse_example, write_records)
from neuroreg.data.clickme import decode_jpeg, gaussian_kernel, prepare_heatmap, resize_bilinear
from neuroreg.errors import DataFormatError, ShapeError


@pytest.fixture(scope="module")
def ref():
    with np.load(PARSED) as z:
        return {k: z[k] for k in z.files}


# ----------------------------------------------------------------------------- CRC-32C and framing
def test_crc32c_known_vectors():
    # RFC 3720 (iSCSI) test vectors and the usual check value
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 255, 256, 257, 1023, 4096, 20001])
def test_vectorised_crc_equals_bytewise(n):
    data = np.random.default_rng(n).integers(0, 256, n).astype(np.uint8).tobytes()
    assert crc32c(data) == _raw_loop(0xFFFFFFFF, data) ^ 0xFFFFFFFF


def test_tensorflow_written_shard_frames(ref):
    # the shard TensorFlow wrote: every length and data CRC checks, one record per label
    with open(SHARD, "rb") as f:
        blob = f.read()
    index = index_records(SHARD)
    assert len(index) == len(ref["label"])
    for offset, length in index:
        header = blob[offset - 12:offset]
        assert struct.unpack("<I", header[8:])[0] == masked_crc32c(header[:8])
        assert struct.unpack("<I", blob[offset + length:offset + length + 4])[0] == masked_crc32c(
            blob[offset:offset + length])
    assert index[-1][0] + index[-1][1] + 4 == len(blob)


def test_written_records_read_back(tmp_path):
    records = [b"", b"a", bytes(range(256)) * 5]
    path = write_records(tmp_path / "r.tfrecords", records)
    assert list(iter_records(path)) == records
    assert index_records(write_records(tmp_path / "empty.tfrecords", [])) == []


def _corrupt(tmp_path, position) -> object:
    path = tmp_path / "val-0.tfrecords"
    shutil.copy(SHARD, path)
    blob = bytearray(path.read_bytes())
    blob[position(index_records(SHARD))] ^= 0x01
    path.write_bytes(bytes(blob))
    return path


def test_corrupted_data_names_file_and_record(tmp_path):
    path = _corrupt(tmp_path, lambda idx: idx[1][0] + 100)     # a byte inside record 1's data
    data = ClickMeDataset([path])
    data.record(0)                                              # record 0 is intact
    with pytest.raises(DataFormatError, match=r"val-0\.tfrecords: record 1 .*data CRC does not match"):
        data.record(1)


def test_corrupted_length_names_file_and_record(tmp_path):
    path = _corrupt(tmp_path, lambda idx: idx[1][0] - 12)      # record 1's length field
    with pytest.raises(DataFormatError, match=r"val-0\.tfrecords: record 1 .*length field's CRC"):
        ClickMeDataset([path])


def test_truncated_shard(tmp_path):
    path = tmp_path / "val-0.tfrecords"
    path.write_bytes(SHARD.read_bytes()[:-10])
    with pytest.raises(DataFormatError, match=r"record 1 .*truncated"):
        index_records(path)
    path.write_bytes(SHARD.read_bytes() + b"\x01\x02")
    with pytest.raises(DataFormatError, match=r"record 2 .*header.*truncated"):
        index_records(path)


def test_missing_shard(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tfrecords"):
        ClickMeDataset([tmp_path / "nope.tfrecords"])


# ----------------------------------------------------------------------------- tf.train.Example
def test_example_round_trip():
    floats = np.array([0.5, -2.25, 1e-8], np.float32)
    features = {"b": [b"x", b"", b"\x00\xff"], "i": [0, -1, 2 ** 40, -(2 ** 63)], "f": floats, "one": b"jpeg"}
    out = parse_example(encode_example(features))
    assert out["b"] == [b"x", b"", b"\x00\xff"] and out["one"] == [b"jpeg"]
    np.testing.assert_array_equal(out["i"], np.array([0, -1, 2 ** 40, -(2 ** 63)], np.int64))
    np.testing.assert_array_equal(out["f"], floats)


def test_unpacked_numbers_and_unknown_fields():
    # int64 and float values written one field each (proto2 style) and an unknown field in Feature
    def delim(number, payload):
        return bytes([number << 3 | 2, len(payload)]) + payload
    ints = delim(3, bytes([1 << 3 | 0, 7, 1 << 3 | 0, 9]))
    floats = delim(2, b"\x0d" + struct.pack("<f", 1.5))
    unknown = bytes([5 << 3 | 0, 1])
    entries = delim(1, delim(1, b"n") + delim(2, unknown + ints)) + delim(1, delim(1, b"g") + delim(2, floats))
    out = parse_example(delim(1, entries))
    np.testing.assert_array_equal(out["n"], [7, 9])
    np.testing.assert_array_equal(out["g"], [1.5])


def test_not_an_example_names_record(tmp_path):
    path = write_records(tmp_path / "val-0.tfrecords", [b"\x0a\xff\xff"])
    with pytest.raises(DataFormatError, match=r"val-0\.tfrecords: record 0: not a tf.train.Example"):
        ClickMeDataset([path]).record(0)


# ----------------------------------------------------------------------------- the release's preparation
def test_parse_equals_released_loader(ref):
    """The released ``load_clickme`` of the TensorFlow-written shard: the same images (bit for bit: the JPEGs
    are decoded as TensorFlow decodes them and resized with TensorFlow's arithmetic) and the same maps to one
    float32 rounding (blur summed in float64 here: max abs diff 1.5e-5 on maps peaking at 128)."""
    data = ClickMeDataset([SHARD])
    assert len(data) == len(ref["label"])
    for i in range(len(data)):
        image, heatmap, label = data.record(i)
        assert label == ref["label"][i]
        assert image.shape == (224, 224, 3) and heatmap.shape == (224, 224, 1)
        np.testing.assert_array_equal(image, ref["image"][i])
        np.testing.assert_allclose(heatmap, ref["heatmap"][i], rtol=1e-6, atol=1e-5)
        item = data[i]
        np.testing.assert_allclose(item[0].permute(1, 2, 0).numpy() * 255, ref["image"][i], atol=3e-5)
        np.testing.assert_allclose(item[1].numpy(), ref["heatmap"][i][..., 0], rtol=1e-6, atol=1e-5)
        assert item[2] == 1.0 and item[3] == ref["label"][i]


def test_decoder_gives_tensorflow_pixels(ref):
    for i, record in enumerate(iter_records(SHARD)):
        features = parse_example(record)
        np.testing.assert_array_equal(decode_jpeg(features["image"][0], 3), ref["image_decoded"][i])
        np.testing.assert_array_equal(decode_jpeg(features["heatmap"][0], 1), ref["heatmap_decoded"][i])
        # Pillow's accurate DCT is a few levels away from TensorFlow's fast one (11 at most on this shard)
        pil = decode_jpeg(features["image"][0], 3, decoder="pil").astype(int)
        assert 0 < np.abs(pil - ref["image_decoded"][i]).max() <= 16


def test_preparation_given_tensorflow_pixels(ref):
    for i in range(len(ref["label"])):
        heatmap = prepare_heatmap(ref["heatmap_decoded"][i]).numpy()
        np.testing.assert_allclose(heatmap, ref["heatmap"][i][..., 0], rtol=1e-6, atol=1e-5)
        pixels = torch.from_numpy(ref["image_decoded"][i].astype(np.float32)).permute(2, 0, 1)
        np.testing.assert_array_equal(resize_bilinear(pixels, (224, 224)).permute(1, 2, 0).numpy(), ref["image"][i])


def test_gaussian_kernel_equals_release(ref):
    np.testing.assert_array_equal(gaussian_kernel(), ref["kernel"])
    assert gaussian_kernel().shape == (10, 10) and abs(float(gaussian_kernel().sum()) - 1) < 1e-6


@pytest.mark.parametrize("shape", [(2, 3, 13, 9), (2, 64, 64)])
def test_resize_bilinear_equals_torch_half_pixel(shape):
    # torch's bilinear with align_corners=False, antialias=False is the same half-pixel rule (other rounding)
    x = torch.rand(shape) * 255
    for size in [(17, 4), (224, 224), (3, 3)]:
        ours = resize_bilinear(x, size)
        theirs = F.interpolate(x.reshape(-1, 1, *shape[-2:]), size=size, mode="bilinear",
                               align_corners=False).reshape(*shape[:-2], *size)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-3)


def test_meta_names_versions():
    meta = json.loads((SHARD.parent / "meta.json").read_text())
    assert meta["harmonization"] == "0.0.9" and meta["tensorflow"].startswith("2.15")


# ----------------------------------------------------------------------------- bad records, shards, iteration
def test_missing_feature_and_wrong_shapes(tmp_path):
    rng = np.random.default_rng(0)
    path = write_records(tmp_path / "val-0.tfrecords", [clickme_record(rng, 3, drop=("heatmap",)),
                                                        clickme_record(rng, 3, size=128),
                                                        clickme_record(rng, 3, map_size=200),
                                                        clickme_record(rng, 1000)])
    data = ClickMeDataset([path])
    with pytest.raises(DataFormatError, match=r"record 0: missing feature\(s\) \['heatmap'\]"):
        data.record(0)
    with pytest.raises(ShapeError, match=r"record 1: feature 'image' decodes to shape \(128, 128, 3\)"):
        data.record(1)
    with pytest.raises(ShapeError, match=r"record 2: feature 'heatmap' decodes to shape \(200, 200, 1\)"):
        data.record(2)
    with pytest.raises(DataFormatError, match=r"record 3: label 1000 is outside \[0, 1000\)"):
        data.record(3)


def test_not_a_jpeg(tmp_path):
    record = encode_example({"image": b"not a jpeg", "heatmap": b"nor this", "label": [1]})
    data = ClickMeDataset([write_records(tmp_path / "val-0.tfrecords", [record])])
    with pytest.raises(DataFormatError, match=r"record 0: feature 'image' is not a readable JPEG"):
        data.record(0)


def test_parse_record_image_size():
    image, heatmap, label = parse_clickme_record(next(iter_records(SHARD)), image_size=96)
    assert image.shape == (96, 96, 3) and heatmap.shape == (96, 96, 1) and label == 7


def test_find_shards_in_number_order(tmp_path):
    for name in ("train-10.tfrecords", "train-2.tfrecords", "val-0.tfrecords"):
        write_clickme_shard(tmp_path / name, [1])
    (tmp_path / "train").mkdir()
    write_clickme_shard(tmp_path / "train" / "train-3.tfrecords", [1])
    assert [p.name for p in find_clickme_shards(tmp_path, "train")] == [
        "train-2.tfrecords", "train-3.tfrecords", "train-10.tfrecords"]
    cache = tmp_path / "cache"
    cache.mkdir()
    for i in (11, 0, 1):
        write_clickme_shard(cache / f"clickme_val_{i}", [1])
    assert [p.name for p in find_clickme_shards(cache, "val")] == ["clickme_val_0", "clickme_val_1", "clickme_val_11"]
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        find_clickme_shards(tmp_path, "test")  # type: ignore[arg-type]


def test_iter_clickme_batches(tmp_path):
    write_clickme_shard(tmp_path / "val-0.tfrecords", [4, 5, 6], seed=1)
    write_clickme_shard(tmp_path / "val-1.tfrecords", [7, 8], seed=2)
    batches = list(iter_clickme(tmp_path, batch_size=2, image_size=32))
    assert [len(b[2]) for b in batches] == [2, 2, 1]
    images, heatmaps, labels = batches[0]
    assert images.shape == (2, 3, 32, 32) and heatmaps.shape == (2, 32, 32) and labels.dtype == torch.long
    assert 0 <= float(images.min()) and float(images.max()) <= 1
    assert torch.cat([b[2] for b in batches]).tolist() == [4, 5, 6, 7, 8]
    limited = list(iter_clickme(tmp_path, batch_size=2, image_size=32, limit=3))
    assert torch.cat([b[2] for b in limited]).tolist() == [4, 5, 6]
    dropped = list(iter_clickme(tmp_path, batch_size=2, image_size=32, drop_last=True))
    assert torch.cat([b[2] for b in dropped]).tolist() == [4, 5, 6, 7]
    with pytest.raises(FileNotFoundError, match="has no train data"):
        list(iter_clickme(tmp_path, split="train"))
