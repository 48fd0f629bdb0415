# %% [markdown]
# # seqlrp in a notebook
#
# Open this file in Jupyter (jupytext) or VS Code: every `# %%` is a cell. It runs as a plain script too
# (`python docs/examples/notebook.py`), which is how the test suite runs it (tests/docs/test_examples.py).
# In a notebook, an explanation as the last expression of a cell shows itself: tokens with their values,
# or heatmaps, each with a numeric colour scale (`Explanation._repr_html_`).

# %%
import os

import torch
from torch import nn

import seqlrp
from seqlrp.viz import Report, show

OUT = os.environ.get("SEQLRP_EXAMPLE_OUT", "out/notebook")
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(0)

# %% [markdown]
# ## A text classifier: tokens and their relevance

# %%
vocabulary = ["<pad>", "the", "film", "was", "good", "bad", "very", "plot"]
text_model = seqlrp.lstm.BiLSTMClassifier(len(vocabulary), 8, 6, 2).eval()
sentences = [["the", "film", "was", "very", "good"], ["the", "plot", "was", "bad", "film"]]
ids = torch.tensor([[vocabulary.index(w) for w in s] for s in sentences])
text = seqlrp.explain_text(text_model, ids, tokens=sentences, labels=["negative", "positive"])
text  # noqa: B018 - in Jupyter: the tokens, coloured, with values and a colour scale

# %%
html = text._repr_html_()  # the same view as a string (self-contained: no network, no files)
print(f"notebook view: {len(html)} characters")
fig = show(text, 0)  # matplotlib: token relevance as bars, with a colorbar in relevance units
fig.savefig(os.path.join(OUT, "tokens.png"), dpi=80)

# %% [markdown]
# ## A CNN: heatmaps

# %%
cnn = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                    nn.Linear(8 * 16 * 16, 3)).eval()
images = torch.rand(2, 3, 32, 32)
composite = seqlrp.Composite({seqlrp.FIRST: ("zbox", {"low": 0.0, "high": 1.0}),
                              seqlrp.groups.CONVOLUTIONS: ("gamma", {"gamma": 0.25}),
                              nn.Linear: ("epsilon", {"epsilon": 0.1}), nn.ReLU: "pass",
                              nn.MaxPool2d: "winner_takes_all"})
pixels = seqlrp.explain(cnn, images, composite=composite, labels=["cat", "dog", "bird"])
pixels  # noqa: B018 - in Jupyter: one heatmap per image, with its colour scale

# %%
fig = show(pixels, 0, image=images[0])  # the input beside the heatmap, with a colorbar
fig.savefig(os.path.join(OUT, "heatmap.png"), dpi=80)

# %% [markdown]
# ## Captum-style: `seqlrp.Attribution`
# `attribute(inputs, target)` returns a tensor shaped like the inputs (token ids → one value per token).

# %%
attribution = seqlrp.Attribution(cnn, composite=composite).attribute(images, target=[0, 2])
print("attribution", tuple(attribution.shape))

# %% [markdown]
# ## Comparing explainers, in one report

# %%
report = Report("notebook example", labels=["negative", "positive"], show_values=True)
report.section("LRP vs gradient × input vs gradient")
report.add_comparison({"LRP": text,
                       "gradient × input": seqlrp.baselines.text_gradient_x_input(text_model, ids, text.target),
                       "gradient": seqlrp.baselines.text_gradient(text_model, ids, text.target)}, 0, sentences[0])
path = report.save(os.path.join(OUT, "report.html"))
print("wrote", path)
