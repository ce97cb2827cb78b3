import torch

from densevision.data.transforms import (
    Compose,
    PhotometricJitter,
    RandomHorizontalFlip,
    ResizeShortest,
    detection_collate,
    resized_shape,
)


def _sample():
    image = torch.rand(3, 40, 60)
    masks = torch.zeros(1, 40, 60, dtype=torch.uint8)
    masks[0, 10:20, 5:25] = 1
    target = {"boxes": torch.tensor([[5.0, 10.0, 25.0, 20.0]]), "masks": masks, "labels": torch.tensor([1]),
              "area": torch.tensor([200.0])}
    return image, target


def test_resized_shape_keeps_aspect_and_caps_long_side():
    assert resized_shape(40, 60, 80, 1000) == (80, 120)
    assert resized_shape(40, 60, 80, 90) == (60, 90)


def test_resize_keeps_boxes_and_masks_consistent():
    image, target = _sample()
    image, target = ResizeShortest(80, 1000)(image, target)
    assert image.shape == (3, 80, 120)
    assert target["masks"].shape == (1, 80, 120)
    assert target["boxes"].tolist() == [[10.0, 20.0, 50.0, 40.0]]
    ys, xs = torch.nonzero(target["masks"][0], as_tuple=True)
    assert (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) == (10, 20, 50, 40)
    assert float(target["area"][0]) == 800.0


def test_flip_mirrors_everything():
    image, target = _sample()
    fimage, ftarget = RandomHorizontalFlip(p=1.0)(image, target)
    assert torch.equal(fimage, image.flip(-1))
    assert ftarget["boxes"].tolist() == [[35.0, 10.0, 55.0, 20.0]]
    ys, xs = torch.nonzero(ftarget["masks"][0], as_tuple=True)
    assert (int(xs.min()), int(xs.max()) + 1) == (35, 55)
    same, _ = RandomHorizontalFlip(p=0.0)(image, target)
    assert torch.equal(same, image)


def test_flip_mirrors_labelled_keypoints_and_swaps_pairs():
    image, target = _sample()
    # Channels 0/1 are a left/right pair, channel 2 maps to itself, channel 3 is not labelled.
    target["keypoints"] = torch.tensor([[[5.0, 10.0, 2], [25.0, 10.0, 1], [15.0, 20.0, 2], [0.0, 0.0, 0]]])
    _, flipped = RandomHorizontalFlip(p=1.0, flip_index=[1, 0, 2, 3])(image, target)
    assert flipped["keypoints"].tolist() == [[[35.0, 10.0, 1], [55.0, 10.0, 2], [45.0, 20.0, 2], [0.0, 0.0, 0]]]
    _, kept_order = RandomHorizontalFlip(p=1.0)(image, target)
    assert kept_order["keypoints"][0, :, 0].tolist() == [55.0, 35.0, 45.0, 0.0]
    assert target["keypoints"][0, 0, 0] == 5.0  # the input target is left as it was


def test_photometric_changes_colour_only_and_is_seeded():
    image, target = _sample()
    jitter = Compose([PhotometricJitter(0.4, 0.4, 0.4, 0.1)])
    torch.manual_seed(3)
    a, ta = jitter(image.clone(), target)
    torch.manual_seed(3)
    b, _ = jitter(image.clone(), target)
    assert torch.equal(a, b)
    assert ta["masks"] is target["masks"]
    assert a.min() >= 0 and a.max() <= 1


def test_collate_keeps_lists():
    images, targets = detection_collate([_sample(), _sample()])
    assert len(images) == 2 and len(targets) == 2
