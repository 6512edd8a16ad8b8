"""Our own fundus foundation model: a small masked-autoencoder ViT (MAE) pretrained
on prepared fundus shards through Ray Train (`ablate fm pretrain`) and saved in
RETFound's MAE checkpoint format, so the `foundation` loss term loads it through
the same code as RETFound (model: custom, arch, weights, imagenet_norm: true).

Modules: mae (the model and the RETFound-format writer), pretrain (presets, the
Ray Train loop and driver), cli (the `fm` typer sub-app). Nothing heavy is
imported here.
"""
