"""The seed tutorial's style-transfer loop (Udacity's VGG19 notebook), as the parity reference.

The code below is the seed's, with only these changes (see reference/README.md):
- the model is the VGG19 `features` Sequential built with torchvision's own make_layers (same
  Conv2d 3x3 padding 1 / ReLU(inplace=True) / MaxPool2d(2, 2) modules at the same indices) with
  widths read from --checkpoint, instead of models.vgg19(pretrained=True).features, which
  cannot be downloaded here;
- CPU, torch.set_num_threads(1) and float32 throughout, for bitwise run-to-run determinism;
- every step's content_loss, style_loss (before style_weight) and total_loss, computed before
  optimizer.step(), are written as JSON Lines to --out; no matplotlib display;
- optional --out-image (final target, via im_convert) and --features-out (per-layer summaries);
- --optimizer lbfgs replaces Adam with torch.optim.LBFGS(line_search_fn="strong_wolfe"), the
  optimiser of Gatys et al. and of nst's --optimizer lbfgs, on the same loss (see lbfgs_loop).
"""

import argparse
import json
import os

import numpy as np
import torch
import torch.optim as optim
from PIL import Image
from torchvision import transforms
from torchvision.models.vgg import make_layers

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = os.path.join(HERE, "testdata")
# Module indices of torchvision's vgg19().features that are MaxPool2d.
VGG19_POOLS = (4, 9, 18, 27, 36)


def load_features(checkpoint):
    """VGG19 `features` from a torchvision-style state_dict (features.N.weight/bias).

    Widths come from the checkpoint, so torchvision's real vgg19 weights load as well as the
    narrow test net; classifier.* keys are ignored.
    """
    state = torch.load(checkpoint, map_location="cpu")
    feats = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    cfg = []
    for i in range(37):
        if i in VGG19_POOLS:
            cfg.append("M")
        elif f"{i}.weight" in feats:
            cfg.append(feats[f"{i}.weight"].shape[0])
    model = make_layers(cfg)
    model.load_state_dict(feats, strict=True)
    assert len(model) == 37
    return model


def load_image(img_path, max_size=400, shape=None):
    ''' Load in and transform an image, making sure the image
       is <= 400 pixels in the x-y dims.'''

    image = Image.open(img_path).convert('RGB')

    # large images will slow down processing
    if max(image.size) > max_size:
        size = max_size
    else:
        size = max(image.size)

    if shape is not None:
        size = shape

    in_transform = transforms.Compose([
                        transforms.Resize(size),
                        transforms.ToTensor(),
                        transforms.Normalize((0.485, 0.456, 0.406),
                                             (0.229, 0.224, 0.225))])

    # discard the transparent, alpha channel (that's the :3) and add the batch dimension
    image = in_transform(image)[:3,:,:].unsqueeze(0)

    return image


def im_convert(tensor):
    """ Display a tensor as an image. """

    image = tensor.to("cpu").clone().detach()
    image = image.numpy().squeeze()
    image = image.transpose(1,2,0)
    image = image * np.array((0.229, 0.224, 0.225)) + np.array((0.485, 0.456, 0.406))
    image = image.clip(0, 1)

    return image


def get_features(image, model, layers=None):
    """ Run an image forward through a model and get the features for
        a set of layers. Default layers are for VGGNet matching Gatys et al (2016)
    """

    ## Need the layers for the content and style representations of an image
    if layers is None:
        layers = {'0': 'conv1_1',
                  '5': 'conv2_1',
                  '10': 'conv3_1',
                  '19': 'conv4_1',
                  '21': 'conv4_2',  ## content representation
                  '28': 'conv5_1'}

    features = {}
    x = image
    # model._modules is a dictionary holding each module in the model
    for name, layer in model._modules.items():
        x = layer(x)
        if name in layers:
            features[layers[name]] = x

    return features


def gram_matrix(tensor):
    ## reshape it, so we are multiplying the features for each channel
    tensor = tensor.view(tensor.shape[1], tensor.shape[2]*tensor.shape[3])
    ## calculate the gram matrix
    gram = torch.mm(tensor,tensor.t())
    return gram


def summary(t):
    """Shape, float64 sum and sum of squares, max and the first five values of a float32 tensor."""
    flat = t.detach().reshape(-1)
    return {
        "shape": list(t.shape),
        "sum": flat.double().sum().item(),
        "sum_sq": (flat.double() ** 2).sum().item(),
        "max": flat.max().item(),
        "first5": [v.item() for v in flat[:5]],
    }


def raw_tensor(path):
    """ToTensor + Normalize of the PNG as stored, without Resize."""
    t = transforms.ToTensor()(Image.open(path).convert('RGB'))
    t = transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))(t)
    return t.unsqueeze(0)


def main():
    ap = argparse.ArgumentParser(description="The seed's style-transfer loop, logged per step.")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--out", required=True, help="JSON Lines loss log, one object per step")
    ap.add_argument("--lr", type=float, default=0.003)
    ap.add_argument("--content-weight", type=float, default=1)
    ap.add_argument("--style-weight", type=float, default=1e6)
    ap.add_argument("--max-size", type=int, default=400)
    ap.add_argument("--show-every", type=int, default=400)
    ap.add_argument("--checkpoint", default=os.path.join(TESTDATA, "vgg19-narrow.pth"))
    ap.add_argument("--content", default=os.path.join(TESTDATA, "content.png"))
    ap.add_argument("--style", default=os.path.join(TESTDATA, "style.png"))
    ap.add_argument("--out-image", help="PNG of the final target (im_convert, then x255 rounded)")
    ap.add_argument("--features-out", help="JSON of per-layer feature/Gram summaries and step-1 losses")
    ap.add_argument("--optimizer", choices=["adam", "lbfgs"], default="adam",
                    help="adam: the seed's loop; lbfgs: torch.optim.LBFGS, strong Wolfe (--lr defaults to 1)")
    ap.add_argument("--history", type=int, default=100, help="L-BFGS history_size (nst's default)")
    ap.add_argument("--tolerance", type=float, default=1e-9, help="L-BFGS tolerance_change (nst's default)")
    args = ap.parse_args()
    if args.optimizer == "lbfgs" and args.lr == 0.003:
        args.lr = 1.0

    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)

    # loading the first part (the narrow or real VGG19 features, see load_features)
    vgg = load_features(args.checkpoint)

    # freeze all VGG parameters since we're only optimizing the target image
    for param in vgg.parameters():
        param.requires_grad_(False)

    # move the model to GPU, if available (here: always the CPU)
    device = torch.device("cpu")
    vgg.to(device)

    # load in content and style image
    content = load_image(args.content, max_size=args.max_size).to(device)
    # Resize style to match content, makes code easier
    style = load_image(args.style, max_size=args.max_size, shape=content.shape[-2:]).to(device)

    if max(content.shape[-2:]) <= args.max_size and content.shape[-1] == content.shape[-2]:
        # Square images within max_size pass through Resize unchanged (the fixtures do).
        assert torch.equal(content, raw_tensor(args.content)), "Resize changed the content image"
        if style.shape == raw_tensor(args.style).shape:
            assert torch.equal(style, raw_tensor(args.style)), "Resize changed the style image"
    assert content.dtype == style.dtype == torch.float32

    # get content and style features only once before forming the target image
    content_features = get_features(content, vgg)
    style_features = get_features(style, vgg)

    # calculate the gram matrices for each layer of our style representation
    style_grams = {layer: gram_matrix(style_features[layer]) for layer in style_features}

    # create a third "target" image and prep it for change
    # it is a good idea to start off with the target as a copy of our *content* image
    # then iteratively change its style
    target = content.clone().requires_grad_(True).to(device)

    # weights for each style layer
    # weighting earlier layers more will result in *larger* style artifacts
    # notice we are excluding `conv4_2` our content representation
    style_weights = {'conv1_1': 1.,
                     'conv2_1': 0.8,
                     'conv3_1': 0.5,
                     'conv4_1': 0.3,
                     'conv5_1': 0.1}

    content_weight = args.content_weight  # alpha
    style_weight = args.style_weight  # beta

    # for displaying the target image, intermittently
    show_every = args.show_every

    if args.optimizer == "lbfgs":
        lbfgs_loop(args, target, vgg, content_features, style_grams, style_weights)
        return

    # iteration hyperparameters
    optimizer = optim.Adam([target], lr=args.lr)
    steps = args.steps  # decide how many iterations to update your image (5000)

    step1 = {}
    with open(args.out, "w") as log:
        for ii in range(1, steps+1):

            ## get the features from your target image
            target_features = get_features(target, vgg)

            ## calculate the content loss
            content_loss = torch.mean((target_features['conv4_2'] - content_features['conv4_2'])**2)

            # the style loss
            # initialize the style loss to 0
            style_loss = 0
            # iterate through each style layer and add to the style loss
            for layer in style_weights:
                # get the "target" style representation for the layer
                target_feature = target_features[layer]
                _, d, h, w = target_feature.shape

                ## Calculate the target gram matrix
                target_gram = gram_matrix(target_feature)

                ## get the "style" style representation
                style_gram = style_grams[layer]
                ## Calculate the style loss for one layer, weighted appropriately
                layer_style_loss = style_weights[layer] * torch.mean((target_gram - style_gram)**2)

                # add to the style loss
                style_loss += layer_style_loss / (d * h * w)
                if ii == 1:
                    step1.setdefault("layer_style_loss", {})[layer] = (layer_style_loss / (d * h * w)).item()

            ## calculate the *total* loss
            total_loss = content_weight * content_loss + style_weight * style_loss

            log.write(json.dumps({"step": ii,
                                  "content_loss": content_loss.item(),
                                  "style_loss": style_loss.item(),
                                  "total_loss": total_loss.item()}) + "\n")

            ## update your target image
            optimizer.zero_grad()
            total_loss.backward()
            if ii == 1:
                step1.update(content_loss=content_loss.item(), style_loss=style_loss.item(),
                             total_loss=total_loss.item(), target_grad=summary(target.grad))
            optimizer.step()

            # display intermediate images and print the loss
            if  ii % show_every == 0:
                print('Total loss: ', total_loss.item())

    if args.out_image:
        image = im_convert(target)
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(args.out_image)

    if args.features_out:
        names = ['conv1_1', 'conv2_1', 'conv3_1', 'conv4_1', 'conv4_2', 'conv5_1']
        doc = {
            "note": "Float32 values as Python floats; sum and sum_sq accumulated in float64. "
                    "Features are post-ReLU (torchvision's ReLU(inplace=True) overwrites the "
                    "stored conv outputs). first5 are the first values in NCHW order.",
            "checkpoint": os.path.basename(args.checkpoint),
            "content_input": summary(content),
            "style_input": summary(style),
            "content_features": {n: summary(content_features[n]) for n in names},
            "style_features": {n: summary(style_features[n]) for n in names},
            "style_gram_sum": {n: style_grams[n].double().sum().item() for n in style_weights},
            "style_gram": {n: summary(style_grams[n]) for n in style_weights},
            "step1": step1 if steps >= 1 else None,
        }
        with open(args.features_out, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")


def lbfgs_loop(args, target, vgg, content_features, style_grams, style_weights):
    """torch.optim.LBFGS(line_search_fn="strong_wolfe") on the seed's loss, logged per iteration.

    Each step() call does one iteration (max_iter=1); the state (directions, history, step
    length, iteration count) carries over between calls, so the iterates are those of one call
    with max_iter=--steps as long as no progress test stops that call early. The line is the
    loss at the iterate the iteration starts from, i.e. the first closure evaluation of the call
    (step 1 is at target = content), as in the Adam log and in nst's. After the logged run, a
    fresh target is optimised in one call with max_iter=--steps and must end bitwise equal.
    """
    def loss_of(t):
        # The seed's loop body.
        target_features = get_features(t, vgg)
        content_loss = torch.mean((target_features['conv4_2'] - content_features['conv4_2'])**2)
        style_loss = 0
        for layer in style_weights:
            target_feature = target_features[layer]
            _, d, h, w = target_feature.shape
            target_gram = gram_matrix(target_feature)
            style_gram = style_grams[layer]
            layer_style_loss = style_weights[layer] * torch.mean((target_gram - style_gram)**2)
            style_loss += layer_style_loss / (d * h * w)
        total_loss = args.content_weight * content_loss + args.style_weight * style_loss
        return content_loss, style_loss, total_loss

    def run(t, max_iter, log=None):
        optimizer = optim.LBFGS([t], lr=args.lr, max_iter=max_iter, max_eval=max_iter * 100,
                                tolerance_grad=1e-7, tolerance_change=args.tolerance,
                                history_size=args.history, line_search_fn="strong_wolfe")
        evals = []

        def closure():
            optimizer.zero_grad()
            c, s, total = loss_of(t)
            total.backward()
            evals.append((c.item(), s.item(), total.item()))
            return total

        if log is None:
            optimizer.step(closure)
            return
        for ii in range(1, args.steps + 1):
            evals.clear()
            before = t.detach().clone()
            optimizer.step(closure)
            c, s, total = evals[0]
            log.write(json.dumps({"step": ii, "content_loss": c, "style_loss": s, "total_loss": total}) + "\n")
            if torch.equal(before, t.detach()):
                break  # converged: nst stops here too

    start = target.detach().clone()
    with open(args.out, "w") as log:
        run(target, 1, log)
    again = start.clone().requires_grad_(True)
    run(again, args.steps)
    assert torch.equal(again.detach(), target.detach()), "one LBFGS call with max_iter=steps ended elsewhere"
    if args.out_image:
        image = im_convert(target)
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(args.out_image)


if __name__ == "__main__":
    main()
