// The entry point a check or render bundles: the composition under test, registered as "Explainer".
// nexus/explainer/toolchain.py writes one root per composition from this template, into src/.
import React from "react";
import {Composition, registerRoot} from "remotion";
import {durationInFrames, Explainer} from "./__COMPOSITION__";

const Root: React.FC = () => (
  <Composition id="Explainer" component={Explainer} durationInFrames={durationInFrames} fps={30} width={640}
    height={360} />
);

registerRoot(Root);
