import { mount } from 'svelte';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import App from './App.svelte';
import { applyTheme, chosenTheme } from './theme';

applyTheme(chosenTheme());

const target = document.getElementById('app');
if (target) mount(App, { target });
