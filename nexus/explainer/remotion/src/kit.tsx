// Nexus explainer kit: the scene components an explainer composition is written with
// (3Blue1Brown-style: dark ground, one idea at a time, things drawn in as they are said).
// Generated compositions import these from "./kit"; each fills the frame of its <Sequence>.
import React from "react";
import {AbsoluteFill, interpolate, spring, useCurrentFrame, useVideoConfig} from "remotion";

export const INK = "#f4f1de";
export const ACCENT = "#58c4dd"; // 3b1b blue
export const WARM = "#fc6255";
const FONT = "'DejaVu Sans', 'Helvetica', sans-serif";

const center: React.CSSProperties = {justifyContent: "center", alignItems: "center", fontFamily: FONT, color: INK};

const useAppear = (delay = 0): number => {
  const frame = useCurrentFrame();
  const {fps} = useVideoConfig();
  return spring({frame: frame - delay, fps, config: {damping: 200}});
};

export const Title: React.FC<{text: string; subtitle?: string}> = ({text, subtitle}) => {
  const shown = useAppear();
  return (
    <AbsoluteFill style={center}>
      <div style={{fontSize: 44, fontWeight: 700, opacity: shown, transform: `translateY(${(1 - shown) * 20}px)`}}>
        {text}
      </div>
      {subtitle ? <div style={{fontSize: 24, marginTop: 16, color: ACCENT, opacity: useAppear(15)}}>{subtitle}</div> : null}
    </AbsoluteFill>
  );
};

export const Bullets: React.FC<{items: string[]; heading?: string}> = ({items, heading}) => {
  const frame = useCurrentFrame();
  return (
    <AbsoluteFill style={{...center, alignItems: "flex-start", padding: "0 64px"}}>
      {heading ? <div style={{fontSize: 32, color: ACCENT, marginBottom: 20}}>{heading}</div> : null}
      {items.map((item, i) => (
        <div key={i} style={{fontSize: 26, margin: "8px 0", opacity: interpolate(frame, [i * 20, i * 20 + 15], [0, 1],
          {extrapolateLeft: "clamp", extrapolateRight: "clamp"})}}>
          {"\u2022 "}{item}
        </div>
      ))}
    </AbsoluteFill>
  );
};

export const Equation: React.FC<{tex: string; caption?: string}> = ({tex, caption}) => {
  const frame = useCurrentFrame();
  const drawn = Math.round(interpolate(frame, [0, 30], [0, tex.length], {extrapolateRight: "clamp"}));
  return (
    <AbsoluteFill style={center}>
      <div style={{fontSize: 48, fontFamily: "'DejaVu Serif', serif", letterSpacing: 2}}>{tex.slice(0, drawn)}</div>
      {caption ? <div style={{fontSize: 22, marginTop: 24, color: ACCENT, opacity: useAppear(30)}}>{caption}</div> : null}
    </AbsoluteFill>
  );
};

export const BarChart: React.FC<{labels: string[]; values: number[]; unit?: string}> = ({labels, values, unit}) => {
  const grow = useAppear();
  const top = Math.max(...values, 1);
  return (
    <AbsoluteFill style={{...center, flexDirection: "row", alignItems: "flex-end", padding: "48px 64px", gap: 24}}>
      {values.map((value, i) => (
        <div key={i} style={{display: "flex", flexDirection: "column", alignItems: "center", flex: 1}}>
          <div style={{fontSize: 18}}>{value}{unit ?? ""}</div>
          <div style={{width: "100%", height: 220 * grow * value / top, backgroundColor: i % 2 ? WARM : ACCENT}} />
          <div style={{fontSize: 18, marginTop: 8}}>{labels[i] ?? ""}</div>
        </div>
      ))}
    </AbsoluteFill>
  );
};

export const NumberLine: React.FC<{from: number; to: number; mark: number; label?: string}> = ({from, to, mark, label}) => {
  const moved = useAppear(10);
  const at = from + (mark - from) * moved;
  const left = 64 + ((at - from) / Math.max(to - from, 1e-9)) * 512;
  return (
    <AbsoluteFill style={center}>
      <div style={{position: "absolute", top: 180, left: 64, width: 512, height: 3, backgroundColor: INK}} />
      <div style={{position: "absolute", top: 170, left: left - 11, width: 22, height: 22, borderRadius: 11,
        backgroundColor: WARM}} />
      <div style={{position: "absolute", top: 200, left: 50, fontSize: 18}}>{from}</div>
      <div style={{position: "absolute", top: 200, left: 566, fontSize: 18}}>{to}</div>
      <div style={{position: "absolute", top: 120, left: left - 40, width: 80, textAlign: "center", fontSize: 20}}>
        {label ?? at.toFixed(1)}
      </div>
    </AbsoluteFill>
  );
};
